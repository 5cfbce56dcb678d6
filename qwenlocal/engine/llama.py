"""LlamaEngine: the Engine on llama.cpp. Loads a GGUF, renders its own chat template, streams events.

The parts live beside it: llamacpp.py (the ctypes model, context, batch and tokenizer), template.py
(the chat template and turn boundary, pure Python), generate.py (prompt evaluation, sampling, stop
rules and the reasoning budget), sampler.py, statecache.py and thinking.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ExitCode, QwenlocalError
from ..events import Done, Event, Notice
from ..images import images_of
from .base import GenerateOptions, LoadOptions
from .generate import evaluate_prompt, generate
from .llamacpp import Model
from .markup import Shield
from .statecache import StateCache
from .template import ChatTemplate, count_tokens, fitting_tokens, tokens_of, turn_boundary


class LlamaEngine:
    """One loaded model and its context. `stream()` is the one way to generate."""

    def __init__(self, path: Path | str, options: LoadOptions, mmproj: Path | str | None = None) -> None:
        self.path = Path(path)
        self.options = options
        self.vision = None  # a Projector (vision.py) when a projector GGUF is loaded
        self.model = Model(self.path, options)
        if mmproj is not None:
            try:
                self.attach_projector(mmproj)
            except BaseException:
                self.model.close()
                raise
        self.tokenizer = self.model.tokenizer
        self.template = ChatTemplate(
            self.model.meta("tokenizer.chat_template"), self.path.name, self.tokenizer.controls
        )

    def attach_projector(self, mmproj: Path | str) -> None:
        """Load a vision projector GGUF for this model (no warm-up: the first image pays)."""
        from .vision import Projector

        if self.vision is None:
            self.vision = Projector(Path(mmproj), self.model, self.options.image_tokens)
            self.model.projector = Path(mmproj)

    # -- model facts ----------------------------------------------------------------------

    @property
    def cache(self) -> StateCache:
        self.model.open()
        return self.model.cache

    @property
    def n_ctx(self) -> int:
        """The context's size in tokens (planned, until the first prompt creates it)."""
        return self.model.n_ctx

    @property
    def max_ctx(self) -> int:
        """How far `grow` may take the context: what memory allows, within the trained length."""
        return max(min(self.model.options.max_ctx, self.model.n_ctx_train or 1 << 30), self.n_ctx)

    @property
    def load_s(self) -> float:
        return self.model.load_s

    @property
    def kv_cache(self) -> str:
        return self.model.options.kv_cache

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        """A context of `n_ctx` tokens; what the context holds is kept (see Model.resize)."""
        self.model.resize(n_ctx, kv_cache)

    def grow(self, needed: int) -> int | None:
        """Grow the context so that it holds `needed` tokens, if memory allows: to at least twice
        its size (fewer, larger steps), at most `max_ctx`. The new size, or None when it cannot."""
        if needed <= self.n_ctx:
            return self.n_ctx
        if needed > self.max_ctx:
            return None
        size = max(2 * self.n_ctx, -(-needed // 1024) * 1024)
        self.resize(min(size, self.max_ctx))
        return self.n_ctx

    @property
    def architecture(self) -> str | None:
        return self.model.meta("general.architecture")

    @property
    def n_embd(self) -> int:
        return self.model.n_embd

    @property
    def shield(self) -> Shield:
        return self.template.shield

    # -- text <-> tokens ------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.tokenizer.tokenize(text, special)

    def piece(self, token: int) -> bytes:
        return self.tokenizer.piece(token)

    def detokenize(self, tokens: list[int]) -> str:
        return self.tokenizer.detokenize(tokens)

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        """The prompt as text, written by the GGUF's own chat template with `enable_thinking` set."""
        return self.template.render(messages, think, tools, generation)

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """Render and tokenize; refuse a prompt that does not fit (never truncate it). An image is
        a run of its own negative id (see vision.py)."""
        pieces = self.template.pieces(messages, think, tools)
        images = images_of(messages)
        if not images:
            return fitting_tokens(pieces, self.tokenizer.tokenize, self.n_ctx, self.model.n_ctx_train)
        from . import vision

        tokens = vision.tokens_with_images(pieces, self.tokenizer.tokenize, images, self.projector())
        vision.check_fits(tokens, self.vision, self.n_ctx, self.model.n_ctx_train)
        return tokens

    def projector(self):
        """The loaded projector, or why an image cannot be read."""
        if self.vision is None:
            raise QwenlocalError(
                f"{self.path.name} was loaded without a vision projector, so it cannot see images",
                hint="catalog models fetch theirs (`qwenlocal pull SIZE --vision`); "
                "for a .gguf path give its projector with --mmproj PATH",
                code=ExitCode.USAGE,
            )
        return self.vision

    def count_tokens(self, messages: list[dict], think: bool, limit: int) -> int:
        """The prompt's tokens, counted without a context; a huge prompt is counted a slice at a
        time and only up to `limit` (the count returned is then at least `limit`)."""
        pieces = self.template.pieces(messages, think, None)
        return count_tokens(pieces, self.tokenizer.tokenize, limit)

    # -- generation -----------------------------------------------------------------------

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint: bool = True,
        keep: Sequence[list[dict]] = (),
    ) -> Iterator[Event]:
        """Answer the conversation: ReasoningDelta / TextDelta / Notice events, then Done.

        `checkpoint=False` is for one-shot prompts: no later turn will reuse the state, so the
        prompt is evaluated in one go, without stopping at the turn boundary to save it. `keep`:
        beginnings of the conversation (message lists) after which the state is worth keeping on
        disk for the next process (the instructions, a piped file, the turns of a saved chat)."""
        tokens = self.prompt_tokens(messages, options.think, tools)
        started = time.perf_counter()
        boundary = 0
        if checkpoint:  # where this prompt stops matching what later turns will render
            boundary = self._common_prefix(messages, options.think, tools, tokens)
        kept = tuple(
            boundary if k is messages and checkpoint else self._common_prefix(k, options.think, tools, tokens)
            for k in (keep if self.model.options.state_dir else ())
        )
        if any(t < 0 for t in tokens):
            prompt = yield from self._evaluate_with_images(tokens, boundary, started, kept)
        else:
            prompt = yield from evaluate_prompt(self.model, tokens, boundary, started, keep=kept)
        for event in generate(self.model, options, prompt, tools=bool(tools)):
            if isinstance(event, Done) and self.model.states is not None:  # a write that failed
                yield from (Notice(text) for text in self.model.states.take_notices())
            yield event

    def _common_prefix(self, messages: list[dict], think: bool, tools, tokens: list[int]) -> int:
        """How far `tokens` go as the rendering of `messages` (without the assistant's opening)
        does: the state there holds for every prompt that starts with these messages."""
        history = self.template.pieces(messages, think, tools, generation=False)
        return turn_boundary(self._tokens_of(history, messages), tokens)

    def _tokens_of(self, pieces, messages: list[dict]) -> list[int]:
        images = images_of(messages)
        if not images:
            return tokens_of(pieces, self.tokenizer.tokenize)
        from .vision import IMAGE_PAD, tokens_with_images

        placed = sum(1 for text, control in pieces if control is not None and text == IMAGE_PAD)
        return tokens_with_images(pieces, self.tokenizer.tokenize, images[:placed], self.vision)

    def _evaluate_with_images(self, tokens: list[int], boundary: int, started: float, keep=()):
        from . import vision

        decode = vision.decoder(self.model, self.vision)
        prompt = yield from evaluate_prompt(self.model, tokens, boundary, started, decode, keep)
        n = vision.cells(tokens, self.vision)
        return replace(
            prompt,
            n_tokens=n,
            reused=vision.cells(tokens[: prompt.reused], self.vision),
            restored=vision.cells(tokens[: prompt.restored], self.vision),
            image_tokens=n - sum(1 for t in tokens if t >= 0),
        )

    def close(self) -> None:
        if getattr(self, "vision", None) is not None:
            self.vision.close()
            self.vision = None
        if getattr(self, "model", None) is not None:
            self.model.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
