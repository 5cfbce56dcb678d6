"""LlamaEngine: the Engine on llama.cpp. Loads a GGUF, renders its own chat template, streams events.
The parts live beside it: llamacpp.py (the ctypes model, context, batch and tokenizer), context.py
(its size: resized, grown), prompt.py
(a conversation as tokens, images included), template.py (the chat template and turn boundary,
pure Python), generate.py (prompt evaluation, sampling, stop rules and the reasoning budget),
sampler.py, statecache.py, promptcache.py and thinking.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..events import Done, Event, Notice
from .base import GenerateOptions, LoadOptions
from .context import Context
from .generate import generate
from .llamacpp import Model
from .markup import Shield
from .prompt import Prompter


class LlamaEngine(Context):
    """One loaded model and its context. `stream()` is the one way to generate."""

    can_attach_projector = True

    def __init__(self, path: Path | str, options: LoadOptions, mmproj: Path | str | None = None) -> None:
        self.path = Path(path)
        self.options = options
        self.model = Model(self.path, options)
        self.prompter = Prompter(self.model, self.path.name)
        if mmproj is not None:
            try:
                self.attach_projector(mmproj)
            except BaseException:
                self.model.close()
                raise

    def attach_projector(self, mmproj: Path | str) -> None:
        """Load a vision projector GGUF for this model (no warm-up: the first image pays)."""
        from .vision import Projector

        if self.vision is None:
            self.prompter.vision = Projector(Path(mmproj), self.model, self.options.image_tokens)
            self.model.projector = Path(mmproj)

    def keep_states(self, max_bytes: int) -> None:
        """Keep other conversations' states in RAM, up to `max_bytes` (a server's clients take
        turns on the one context: see promptcache.py)."""
        from .promptcache import PromptCache

        cache = self.cache  # creates the context
        cache.stash = PromptCache(self.model.lib, self.model.ctx, max_bytes)

    # -- model facts ----------------------------------------------------------------------

    @property
    def vision(self):
        """The attached projector (vision.py), or None."""
        return self.prompter.vision

    @property
    def can_see(self) -> bool:
        return self.vision is not None

    @property
    def architecture(self) -> str | None:
        return self.model.meta("general.architecture")

    @property
    def n_embd(self) -> int:
        return self.model.n_embd

    @property
    def shield(self) -> Shield:
        return self.prompter.template.shield

    # -- text <-> tokens ------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.model.tokenizer.tokenize(text, special)

    def piece(self, token: int) -> bytes:
        return self.model.tokenizer.piece(token)

    def detokenize(self, tokens: list[int]) -> str:
        return self.model.tokenizer.detokenize(tokens)

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        """The prompt as text, written by the GGUF's own chat template with `enable_thinking` set."""
        return self.prompter.template.render(messages, think, tools, generation)

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """The prompt `stream` evaluates, refused (never truncated) when it does not fit; an image
        is a run of its own negative id (see vision.py)."""
        return self.prompter.tokens(messages, think, tools)

    def count_tokens(self, messages: list[dict], think: bool, limit: int) -> int:
        return self.prompter.count(messages, think, limit)

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
        prompter = self.prompter
        tokens = prompter.tokens(messages, options.think, tools)
        started = time.perf_counter()
        # where this prompt stops matching what later turns will render
        boundary = prompter.common_prefix(messages, options.think, tools, tokens) if checkpoint else 0
        kept = tuple(
            boundary
            if k is messages and checkpoint
            else prompter.common_prefix(k, options.think, tools, tokens)
            for k in (keep if self.model.options.state_dir else ())
        )
        prompt = yield from prompter.evaluate(tokens, boundary, started, kept)
        for event in generate(self.model, options, prompt, tools=bool(tools)):
            if isinstance(event, Done) and self.model.states is not None:  # a write that failed
                yield from (Notice(text) for text in self.model.states.take_notices())
            yield event

    def close(self) -> None:
        if getattr(self, "prompter", None) is not None and self.prompter.vision is not None:
            self.prompter.vision.close()
            self.prompter.vision = None
        if getattr(self, "model", None) is not None:
            self.model.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
