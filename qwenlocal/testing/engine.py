"""A fake Engine for loop logic (the agent, a chat session): scripted replies, no model.

Anything that depends on real tokens, the template or llama.cpp belongs on the real engine with
the GGUFs of `qwenlocal.testing.ggufs`; this one only replays text and records what it was shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from ..engine import GenerateOptions
from ..errors import ExitCode, QwenlocalError
from ..events import Done, Event, Stats


class FakeEngine:  # an Engine (qwenlocal.engine.Engine)
    """Answers with the next scripted reply ("done" when they run out); records the conversations
    it was shown in `seen` and the tools offered in `tools_seen`.

    `expect_tools`: tool names every call must offer (an AssertionError otherwise)."""

    can_resize = can_attach_projector = can_see = False
    path = Path("fake.gguf")
    kv_cache = "f16"
    trained_ctx = 0

    def __init__(
        self, replies: Iterable[str], expect_tools: Iterable[str] = (), n_ctx: int = 32768, max_ctx: int = 0
    ) -> None:
        self.replies = list(replies)
        self.expect_tools = set(expect_tools)
        self.n_ctx = n_ctx
        self.max_ctx = max(max_ctx, n_ctx)  # how far `grow` may go (the real engine: memory)
        self.seen: list[list[dict]] = []
        self.tools_seen: list[list[dict] | None] = []
        self.closed = False

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint: bool = True,
        keep=(),
    ) -> Iterator[Event]:
        self.prompt_tokens(messages, options.think, tools)  # a prompt that does not fit is refused
        self.seen.append([dict(m) for m in messages])
        self.tools_seen.append(tools)
        if self.expect_tools:
            assert tools and {t["function"]["name"] for t in tools} >= self.expect_tools
        reply = self.replies.pop(0) if self.replies else "done"
        yield Done(reply, "", "stop", Stats(0, 1, 0, 1, 0, 0, 0, self.n_ctx))

    def grow(self, needed: int) -> int | None:
        """As the real engine: to at least twice the size, at most `max_ctx`; None past it."""
        if needed <= self.n_ctx:
            return self.n_ctx
        if needed > self.max_ctx:
            return None
        self.n_ctx = min(max(2 * self.n_ctx, needed), self.max_ctx)
        return self.n_ctx

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in messages)
        return text + ("assistant: " if generation else "")

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """One token per word of the rendered prompt; refused, as the real one, when it does not fit."""
        tokens = list(range(len(self.render(messages, think, tools).split())))
        if len(tokens) >= self.n_ctx:
            raise QwenlocalError(f"the prompt is {len(tokens)} tokens", code=ExitCode.CONTEXT_OVERFLOW)
        return tokens

    def count_tokens(self, messages: list[dict], think: bool, limit: int) -> int:
        return len(self.render(messages, think).split())

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        raise NotImplementedError

    def attach_projector(self, path: Path) -> None:
        raise NotImplementedError

    def keep_states(self, max_bytes: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True
