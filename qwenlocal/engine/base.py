"""What every engine offers its callers (chat, run, the agent, a server) and the options it takes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ..events import Event
from ..models.catalog import Sampling
from .grammar import Grammar


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int
    n_threads: int
    n_gpu_layers: int = 0
    n_batch: int = 512
    image_tokens: int | None = None  # the most tokens one image becomes (None: the projector's own)
    kv_cache: str = "f16"  # the KV cache's type: f16, q8_0 or q4_0
    max_ctx: int = 0  # how far the context may grow (`grow`) when a conversation needs it; 0: n_ctx
    state_dir: str | None = None  # where states are kept between processes (None: nowhere)
    state_max: int = 0  # the most bytes they may take there


@dataclass(frozen=True)
class GenerateOptions:
    sampling: Sampling
    think: bool = False
    think_budget: int | None = None  # reasoning tokens before the think block is closed
    max_tokens: int | None = None
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens, as llama-bench does
    stop: tuple[str, ...] = ()  # end the answer once it contains one of these (the server's `stop`)
    grammar: Grammar | None = None  # the answer must match it (JSON of a schema, a tool call)
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token, bias): tests and benchmarks


def instructions(messages: list[dict]) -> list[dict]:
    """The conversation's system message alone, with the empty user turn the chat template needs
    after it: rendered with the same tools, how every prompt of the conversation begins (a `keep`
    of `Engine.stream`)."""
    system = [m for m in messages[:1] if m.get("role") == "system"]
    return [*system, {"role": "user", "content": ""}]


def with_temperature(sampling: Sampling, temperature: float | None) -> Sampling:
    return sampling if temperature is None else replace(sampling, temperature=temperature)


class Engine(Protocol):
    """A loaded model that answers conversations: LlamaEngine here, RemoteEngine through a running
    `qwenlocal serve`; qwenlocal.testing's FakeEngine replays scripted replies for loop logic.
    Callers ask its capabilities, never its class."""

    path: Path  # the model file it answers with (a server's: the local file it serves)
    n_ctx: int  # the context size, in tokens
    max_ctx: int  # how far `grow` may take it
    trained_ctx: int  # the context the model was trained for (0: unknown)
    kv_cache: str  # the KV cache's type
    can_resize: bool  # the context is this process's: `resize` fits it to a prompt, `grow` grows it
    can_attach_projector: bool  # images can be read here once a projector is attached
    can_see: bool  # a projector is attached

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        """A context of `n_ctx` tokens (with `can_resize`)."""
        ...

    def count_tokens(self, messages: list[dict], think: bool, limit: int) -> int:
        """The prompt's tokens without a context, counted up to `limit`."""
        ...

    def attach_projector(self, path: Path) -> None:
        """Load the model's vision projector (with `can_attach_projector`)."""
        ...

    def keep_states(self, max_bytes: int) -> None:
        """Keep other conversations' states, up to `max_bytes`, for clients taking turns."""
        ...

    def grow(self, needed: int) -> int | None:
        """Grow the context to hold `needed` tokens, keeping what it holds; the new size, or None
        when memory (or the model) does not allow it."""
        ...

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint: bool = True,
        keep: Sequence[list[dict]] = (),
    ) -> Iterator[Event]:
        """ReasoningDelta / TextDelta / Notice events, then one Done. `keep`: beginnings of the
        conversation whose state is worth keeping for the next process (where it keeps any)."""
        ...

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """The prompt `stream` would evaluate; raises CONTEXT_OVERFLOW when it does not fit."""
        ...

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        """The prompt as text."""
        ...

    def close(self) -> None: ...
