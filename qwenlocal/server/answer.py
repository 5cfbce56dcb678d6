"""One request's answer: the worker's events through the assembler, streamed as server-sent events
(what came while the event loop was busy goes out in one write) or collected into one completion.
Either way the generation is cancelled when the answer ends early (the client went away). A stream
always ends with `data: [DONE]`, after the last chunk (Done) or an error in OpenAI's shape (the
generation failed, the server is shutting down)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request

from ..events import Done
from .protocol import api_error
from .reply import Assembler, Reply
from .worker import END, Job


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def relay(
    job: Job,
    items: list,
    more: Callable[[], Awaitable[list]],
    opening: list[str],
    step: Callable[[object], tuple[list[str], bool]],
) -> AsyncIterator[str]:
    """A stream in any API's shape: `step(item)` turns each of the worker's items (an event, Done,
    the exception the generation raised, END) into that API's server-sent events, and says
    whether it was the last. What came while the event loop was busy goes out in one write; the
    generation is cancelled when the stream ends early (the client went away, a shutdown)."""
    try:
        out = list(opening)
        while True:
            for item in items:
                events, last = step(item)
                out += events
                if last:
                    yield "".join(out)
                    return
            if out:
                yield "".join(out)
            out, items = [], await more()
    finally:  # also when the client went away and the response was cancelled
        job.cancel()


async def gather(
    job: Job,
    items: list,
    more: Callable[[], Awaitable[list]],
    feed: Callable[[object], object],
    finish: Callable[[Done], dict],
) -> dict | None:
    """An answer in any API's shape, whole once it is done: each event is fed, `finish(done)` makes
    the result; None when the client went away first. The exception the generation raised is
    raised (the status is not sent yet)."""
    try:
        while END not in items:
            items += await more()
        for item in items:
            if isinstance(item, Exception):
                raise api_error(item)
            if isinstance(item, Done):
                return finish(item)
            if item is not END:
                feed(item)
    finally:
        job.cancel()
    return None


class Answer:
    """One request's answer: the job's events through the assembler, streamed or collected."""

    def __init__(self, request: Request, job: Job, reply: Reply, assembler: Assembler) -> None:
        self.request, self.job, self.reply, self.assembler = request, job, reply, assembler

    async def batch(self) -> list:
        return await self.job.batch(self.request.is_disconnected)

    def _chunks(self, item: object, include_usage: bool) -> tuple[list[str], bool]:
        """OpenAI's chunks of one item, and whether the stream ends (then with `data: [DONE]`)."""
        reply = self.reply
        if item is END:
            return [sse("[DONE]")], True
        if isinstance(item, Exception):
            return [sse(api_error(item).body()), sse("[DONE]")], True
        if not isinstance(item, Done):
            return [sse(reply.chunk(delta)) for delta in self.assembler.feed(item)], False
        deltas, finish = self.assembler.finish(item)
        chunks = [sse(reply.chunk(delta)) for delta in deltas] + [sse(reply.chunk({}, finish))]
        usage = [sse(reply.usage_chunk(item.stats))] if include_usage else []
        return [*chunks, *usage, sse("[DONE]")], True

    def stream(self, items: list, include_usage: bool) -> AsyncIterator[str]:
        opening = [sse(self.reply.chunk({"role": "assistant", "content": ""}))]
        return relay(self.job, items, self.batch, opening, lambda item: self._chunks(item, include_usage))

    def collect(self, items: list) -> Awaitable[dict | None]:
        def completion(done: Done) -> dict:
            _, finish = self.assembler.finish(done)
            return self.reply.completion(self.assembler, finish, done.stats)

        return gather(self.job, items, self.batch, self.assembler.feed, completion)
