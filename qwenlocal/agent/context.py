"""Keeping a long agent run inside the context: older tool results are shortened, never the task.

Before each step the loop asks `ContextBudget.fit` whether the conversation, rendered with the
tools, leaves room for the model's reply. If not, the context first grows where memory allows
(the engine moves its state into a larger context: nothing is read again). If it still does not
fit, the oldest tool results are cut to their head and
tail, one at a time, until it does; the system prompt, the task, the model's own replies and the
latest steps' results are never touched. The transcript keeps every result whole.

Shortening changes the prompt's prefix, so the engine's state reuse (engine/statecache.py) has to
evaluate the conversation again from its latest checkpoint before the first shortened result: as
the checkpoints are those of the last few steps, in practice the whole prompt, once. So a
shortening frees a good margin at once (a quarter of the context, FREE_SHARE) rather than the few
tokens this step lacks: then it happens every several steps of a long run, not at every step once
the context is full, and the steps between reuse the state again.
"""

from __future__ import annotations

from ..errors import ExitCode, QwenlocalError
from .events import ContextGrown, ContextShortened

ANSWER_ROOM = 4096  # tokens kept free for the model's reply (its reasoning and calls), unless --max-tokens
FREE_SHARE = 4  # a shortening frees a quarter of the context beyond what the step needs
KEEP_STEPS = 2  # the results of the latest steps are never shortened
HEAD = TAIL = 300  # characters kept from the start and the end of a shortened result
MARK = "[... {n} characters of an earlier result removed to fit the context ...]"


class ContextFull(Exception):
    """Nothing more can be shortened and the conversation still leaves no room for a reply."""


def shorten(text: str) -> str:
    removed = len(text) - HEAD - TAIL
    return f"{text[:HEAD]}\n{MARK.format(n=removed)}\n{text[-TAIL:]}"


class ContextBudget:
    """How many prompt tokens a step may use, and the shortening that keeps a run under it."""

    def __init__(self, engine, think: bool, tools: list[dict], max_tokens: int | None = None) -> None:
        self.engine, self.think, self.tools, self.max_tokens = engine, think, tools, max_tokens
        self._size()

    def _size(self) -> None:
        n_ctx, max_tokens = self.engine.n_ctx, self.max_tokens
        self.reserve = min(max_tokens, n_ctx // 2) if max_tokens else min(ANSWER_ROOM, n_ctx // 4)
        self.limit = n_ctx - self.reserve  # prompt tokens at most
        self.target = self.limit - n_ctx // FREE_SHARE  # where a shortening aims

    def grow(self, messages: list[dict], n: int) -> ContextGrown | None:
        """Grow the context (its state kept, nothing read again) until the prompt of `n` tokens
        is within the limit, where memory allows; what was done, or None."""
        before = self.engine.n_ctx
        while n > self.limit:
            size = self.engine.n_ctx
            if (self.engine.grow(n + self.reserve) or 0) <= size:
                break
            self._size()
            n = self.count(messages)
        if self.engine.n_ctx == before:
            return None
        after = self.engine.n_ctx
        text = f"context grown from {before:,} to {after:,} tokens to keep every tool result whole"
        return ContextGrown(text, before, after)

    def count(self, messages: list[dict]) -> int:
        """The prompt's tokens; the context's size when it does not fit at all."""
        try:
            return len(self.engine.prompt_tokens(messages, self.think, self.tools))
        except QwenlocalError as error:
            if error.code != ExitCode.CONTEXT_OVERFLOW:
                raise
            return self.engine.n_ctx

    def fit(self, messages: list[dict]) -> ContextGrown | ContextShortened | None:
        """Shorten old tool results in `messages` (in place) until the prompt is within the limit,
        aiming at the target; what was done, or None when it already fit. Raises ContextFull."""
        before = n = self.count(messages)
        if n <= self.limit:
            return None
        grown = self.grow(messages, n)
        if grown is not None:
            n = self.count(messages)
            if n <= self.limit:
                return grown
        results = characters = 0
        for index in self.shortenable(messages):
            text = messages[index]["content"]
            messages[index] = {**messages[index], "content": shorten(text)}
            results += 1
            characters += len(text) - HEAD - TAIL
            n = self.count(messages)
            if n <= self.target:
                break
        if n > self.limit:
            n_ctx = self.engine.n_ctx
            size = f"{n} tokens" if n < n_ctx else f"over {n_ctx} tokens"
            raise ContextFull(
                f"stopped: the conversation is {size} and a reply needs {self.reserve} more, but the "
                f"context holds {n_ctx} (raise --ctx); older results were shortened as far as they can be"
            )
        text = (
            f"context: {results} earlier tool result{'s' if results != 1 else ''} shortened "
            f"({characters:,} characters) to fit {self.engine.n_ctx} tokens: {before} -> {n}"
        )
        return ContextShortened(text, results, characters, before, n, self.engine.n_ctx)

    @staticmethod
    def shortenable(messages: list[dict]) -> list[int]:
        """Indices of the tool results that may be shortened, oldest first: those before the
        latest KEEP_STEPS replies of the model, long enough for shortening to free something."""
        replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(replies) < KEEP_STEPS:
            return []
        end = replies[-KEEP_STEPS]
        return [
            i
            for i, m in enumerate(messages[:end])
            if m["role"] == "tool" and len(m.get("content") or "") > 2 * (HEAD + TAIL)
        ]
