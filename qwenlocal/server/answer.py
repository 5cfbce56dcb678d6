"""One request's answer: the worker's events through the assembler, streamed as server-sent events
(what came while the event loop was busy goes out in one write) or collected into one completion.
Either way the generation is cancelled when the answer ends early (the client went away). A stream
always ends with `data: [DONE]`, after the last chunk (Done) or an error in OpenAI's shape (the
generation failed, the server is shutting down)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request

from ..events import Done
from .protocol import api_error
from .reply import Assembler, Reply
from .worker import END, Job


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class Answer:
    """One request's answer: the job's events through the assembler, streamed or collected."""

    def __init__(self, request: Request, job: Job, reply: Reply, assembler: Assembler) -> None:
        self.request, self.job, self.reply, self.assembler = request, job, reply, assembler

    async def batch(self) -> list:
        return await self.job.batch(self.request.is_disconnected)

    def _chunks(self, item: object, include_usage: bool) -> list[str]:
        reply = self.reply
        if isinstance(item, Exception):
            return [sse(api_error(item).body())]
        if not isinstance(item, Done):
            return [sse(reply.chunk(delta)) for delta in self.assembler.feed(item)]
        deltas, finish = self.assembler.finish(item)
        chunks = [sse(reply.chunk(delta)) for delta in deltas] + [sse(reply.chunk({}, finish))]
        return chunks + ([sse(reply.usage_chunk(item.stats))] if include_usage else [])

    async def stream(self, items: list, include_usage: bool) -> AsyncIterator[str]:
        try:
            chunks = [sse(self.reply.chunk({"role": "assistant", "content": ""}))]
            while True:
                for item in items:
                    if item is not END:
                        chunks += self._chunks(item, include_usage)
                    if item is END or isinstance(item, Done | Exception):  # nothing comes after
                        yield "".join(chunks) + sse("[DONE]")
                        return
                if chunks:
                    yield "".join(chunks)  # what came meanwhile, in one write
                chunks, items = [], await self.batch()
        finally:  # also when the client went away and the response was cancelled
            self.job.cancel()

    async def collect(self, items: list) -> dict | None:
        done, finish = None, "stop"
        try:
            while END not in items:
                items += await self.batch()
            for item in items:
                if isinstance(item, Exception):
                    raise api_error(item)
                if isinstance(item, Done):
                    done, (_, finish) = item, self.assembler.finish(item)
                    break
                if item is not END:
                    self.assembler.feed(item)
        finally:
            self.job.cancel()
        return None if done is None else self.reply.completion(self.assembler, finish, done.stats)
