"""Split a streamed reply into reasoning (before `</think>`) and answer (after it).

When tools were offered, a `<tool_call>` also ends the reasoning, as in llama.cpp: small models
often call a tool before closing their think block, and the call belongs to the answer, where the
agent's parser reads it."""

from __future__ import annotations

from collections.abc import Iterator

from ..events import ReasoningDelta, TextDelta
from .toolcall import CALL_OPEN

END = "</think>"


class ThinkSplitter:
    """Feed text as it is decoded; get ReasoningDelta / TextDelta events.

    Starts in reasoning mode when the prompt opened a `<think>` block. Holds back just enough text
    to recognise a `</think>` split across pieces, drops the whitespace around the boundary, and
    keeps the full reasoning and answer for the final event.
    """

    def __init__(self, thinking: bool, tools: bool = False) -> None:
        self.in_reasoning = thinking
        self._ends = (END, CALL_OPEN) if tools else (END,)
        self._pending = ""
        self._answer_started = False
        self.reasoning = ""
        self.answer = ""

    def feed(self, text: str) -> Iterator[ReasoningDelta | TextDelta]:
        self._pending += text
        while self._pending:
            if self.in_reasoning:
                found = [(self._pending.find(t), t) for t in self._ends if t in self._pending]
                cut, tag = min(found, default=(-1, ""))
                if cut >= 0:
                    yield from self._reason(self._pending[:cut].rstrip("\n"))
                    self._pending = self._pending[cut + (len(tag) if tag == END else 0) :]  # a call stays
                    self.in_reasoning = False
                    continue
                keep = max(partial_suffix(self._pending, t) for t in self._ends)
                # trailing newlines may be the ones before </think>: hold them too
                body = self._pending[: len(self._pending) - keep]
                stripped = body.rstrip("\n")
                yield from self._reason(stripped)
                self._pending = body[len(stripped) :] + self._pending[len(body) :]
                return
            if not self._answer_started:
                self._pending = self._pending.lstrip()
                if not self._pending:
                    return
                self._answer_started = True
            self.answer += self._pending
            yield TextDelta(self._pending)
            self._pending = ""

    def _reason(self, text: str) -> Iterator[ReasoningDelta]:
        if not self.reasoning:
            text = text.lstrip("\n")
        if text:
            self.reasoning += text
            yield ReasoningDelta(text)

    def flush(self) -> Iterator[ReasoningDelta | TextDelta]:
        """The end of generation: whatever was held back belongs where it stood."""
        pending, self._pending = self._pending, ""
        if self.in_reasoning:
            yield from self._reason(pending.rstrip("\n"))
        elif pending.strip() or self._answer_started:
            self.answer += pending
            if pending:
                yield TextDelta(pending)


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a beginning of `tag`: how much of a stream to
    hold back in case `tag` arrives split across pieces."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
