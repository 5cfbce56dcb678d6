"""LlamaEngine: the Engine on llama.cpp. Loads a GGUF, renders its own chat template, streams events.

The parts live beside it: llamacpp.py (the ctypes model, context, batch and tokenizer), template.py
(the chat template and turn boundary, pure Python), generate.py (prompt evaluation, sampling, stop
rules and the reasoning budget), sampler.py, statecache.py and thinking.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from ..events import Event
from .base import GenerateOptions, LoadOptions
from .generate import evaluate_prompt, generate
from .llamacpp import Model
from .markup import Shield
from .statecache import StateCache
from .template import ChatTemplate, fitting_tokens, tokens_of, turn_boundary


class LlamaEngine:
    """One loaded model and its context. `stream()` is the one way to generate."""

    def __init__(self, path: Path | str, options: LoadOptions) -> None:
        self.path = Path(path)
        self.options = options
        self.model = Model(self.path, options)
        self.tokenizer = self.model.tokenizer
        self.n_ctx: int = self.model.n_ctx
        self.load_s = self.model.load_s
        self.template = ChatTemplate(
            self.model.meta("tokenizer.chat_template"), self.path.name, self.tokenizer.controls
        )

    # -- model facts ----------------------------------------------------------------------

    @property
    def cache(self) -> StateCache:
        return self.model.cache

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
        """Render and tokenize; refuse a prompt that does not fit (never truncate it)."""
        pieces = self.template.pieces(messages, think, tools)
        return fitting_tokens(pieces, self.tokenizer.tokenize, self.n_ctx, self.model.n_ctx_train)

    # -- generation -----------------------------------------------------------------------

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint: bool = True,
    ) -> Iterator[Event]:
        """Answer the conversation: ReasoningDelta / TextDelta / Notice events, then Done.

        `checkpoint=False` is for one-shot prompts: no later turn will reuse the state, so the
        prompt is evaluated in one go, without stopping at the turn boundary to save it."""
        tokens = self.prompt_tokens(messages, options.think, tools)
        started = time.perf_counter()
        boundary = 0
        if checkpoint:  # where this prompt stops matching what later turns will render
            history = self.template.pieces(messages, options.think, tools, generation=False)
            boundary = turn_boundary(tokens_of(history, self.tokenizer.tokenize), tokens)
        prompt = evaluate_prompt(self.model, tokens, boundary, started)
        yield from generate(self.model, options, prompt, tools=bool(tools))

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
