"""The Anthropic Messages API's answers: /v1/messages (a message, or its stream of events) and
/v1/messages/count_tokens, on the same worker, engine and Assembler as chat completions.

The Assembler's deltas become content blocks: reasoning a `thinking` block, the answer a `text`
block, each tool call a `tool_use` block (its input sent whole, as one `input_json_delta`). A
stream is Anthropic's events, `event: NAME` then `data: JSON`: message_start, ping, for each block
content_block_start / _delta... / _stop, then message_delta (stop_reason, usage) and message_stop.
Errors, before the answer or in its stream (`event: error`), are Anthropic's
{"type": "error", "error": {"type", "message"}} with the status chat completions would give.

Usage as Anthropic counts it: `input_tokens` are the prompt tokens read for this request,
`cache_read_input_tokens` those whose state the server kept from an earlier one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine.toolcall import ToolCall
from ..events import Done, PromptProgress, Stats
from .answer import Answer, relay
from .anthropic import SIGNATURE, parse_request
from .openai import ApiError
from .protocol import api_error
from .reply import Assembler
from .worker import END

if TYPE_CHECKING:
    from .app import ServerState

KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_body(error: ApiError) -> dict:
    kind = KINDS.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def endpoint(handler):
    """A route whose errors, expected or not, are answered in Anthropic's shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exception:
            error = api_error(exception)
            headers = {"Retry-After": "1"} if error.status in (429, 503) else None
            return JSONResponse(error_body(error), error.status, headers=headers)

    return route


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def usage(stats: Stats) -> dict:
    return {
        "input_tokens": stats.prompt_tokens - stats.reused_tokens,
        "output_tokens": stats.generated_tokens,
        "cache_read_input_tokens": stats.reused_tokens,
        "cache_creation_input_tokens": 0,
    }


def stop_reason(assembler: Assembler, finish: str) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence, from the Assembler's finish reason."""
    if assembler.calls:
        return "tool_use", None
    if finish == "length":
        return "max_tokens", None
    if assembler.stop_found is not None:
        return "stop_sequence", assembler.stop_found
    return "end_turn", None


def tool_use(call: ToolCall) -> dict:
    return {
        "type": "tool_use",
        "id": f"toolu_{secrets.token_hex(12)}",
        "name": call.name,
        "input": call.arguments,
    }


EMPTY = {
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
    "text": {"type": "text", "text": ""},
}


class MessageReply:
    """One message: whole at the end (`completion`, as answer.Answer.collect asks a reply), or as
    the events of a stream (`start`, `feed`, `finish`)."""

    def __init__(self, model: str, assembler: Assembler) -> None:
        self.id = f"msg_{secrets.token_hex(12)}"
        self.model, self.assembler = model, assembler
        self._block: str | None = None  # the kind of the block open in the stream
        self._index = -1

    def _message(self, content: list, reason: str | None, sequence: str | None, counts: dict) -> dict:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": counts,
        }

    def completion(self, assembler: Assembler, finish: str, stats: Stats) -> dict:
        blocks: list[dict] = []
        if assembler.reasoning:
            blocks.append({"type": "thinking", "thinking": assembler.reasoning, "signature": SIGNATURE})
        if assembler.content:
            blocks.append({"type": "text", "text": assembler.content})
        blocks += [tool_use(call) for call in assembler.calls]
        return self._message(blocks, *stop_reason(assembler, finish), usage(stats))

    def start(self, first: list) -> list[str]:
        """message_start (with the prompt tokens read, when the first events say) and a ping."""
        read = next((item.total for item in first if isinstance(item, PromptProgress)), 0)
        counts = {"input_tokens": read, "output_tokens": 0}
        counts.update(cache_read_input_tokens=0, cache_creation_input_tokens=0)
        message = self._message([], None, None, counts)
        return [
            event("message_start", {"type": "message_start", "message": message}),
            event("ping", {"type": "ping"}),
        ]

    def feed(self, item: object) -> list[str]:
        return self._deltas(self.assembler.feed(item))

    def finish(self, done: Done) -> list[str]:
        deltas, finish = self.assembler.finish(done)
        out = self._deltas([d for d in deltas if "tool_calls" not in d]) + self._close()
        for call in self.assembler.calls:
            out += self._open(tool_use(call) | {"input": {}})
            delta = {
                "type": "input_json_delta",
                "partial_json": json.dumps(call.arguments, ensure_ascii=False),
            }
            out += [self._delta(delta), *self._close()]
        reason, sequence = stop_reason(self.assembler, finish)
        ending = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}}
        ending["usage"] = usage(done.stats)
        return [*out, event("message_delta", ending), event("message_stop", {"type": "message_stop"})]

    def _deltas(self, deltas: list[dict]) -> list[str]:
        out = []
        for delta in deltas:
            kind, key = (
                ("thinking", "reasoning_content") if "reasoning_content" in delta else ("text", "content")
            )
            if self._block != kind:
                out += self._close() + self._open(EMPTY[kind])
            out.append(self._delta({"type": f"{kind}_delta", kind: delta[key]}))
        return out

    def _open(self, block: dict) -> list[str]:
        self._index, self._block = self._index + 1, block["type"]
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return [event("content_block_start", start)]

    def _delta(self, delta: dict) -> str:
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
        )

    def _close(self) -> list[str]:
        if self._block is None:
            return []
        out = (
            [self._delta({"type": "signature_delta", "signature": SIGNATURE})]
            if self._block == "thinking"
            else []
        )
        self._block = None
        return [*out, event("content_block_stop", {"type": "content_block_stop", "index": self._index})]


def stream(answer: Answer, reply: MessageReply, items: list) -> AsyncIterator[str]:
    """The message's events (answer.relay's loop); the client gone (END), nothing more is sent."""

    def step(item: object) -> tuple[list[str], bool]:
        if item is END:
            return [], True
        if isinstance(item, Exception):
            return [event("error", error_body(api_error(item)))], True
        if isinstance(item, Done):
            return reply.finish(item), True
        return reply.feed(item), False

    return relay(answer.job, items, answer.batch, reply.start(items), step)


class MessagesRoutes:
    """POST /v1/messages and /v1/messages/count_tokens, on one server's state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", endpoint(self.messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", endpoint(self.count_tokens), methods=["POST"]),
        ]

    async def messages(self, request: Request) -> Response:
        state = self.state
        ask = parse_request(await state.body(request), state.defaults)
        job, first = await state.start(request, ask)
        reply = MessageReply(state.label, Assembler(ask.tools, ask.options.stop))
        answer = Answer(request, job, reply, reply.assembler)
        if ask.stream:
            events = stream(answer, reply, first)
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        message = await answer.collect(first)
        return JSONResponse(message) if message is not None else Response(status_code=499)

    async def count_tokens(self, request: Request) -> Response:
        state = self.state
        ask = parse_request(await state.body(request), state.defaults, counting=True)
        engine = state.ready().engine
        tokens = await run_in_threadpool(engine.prompt_tokens, ask.messages, ask.options.think, ask.tools)
        return JSONResponse({"input_tokens": len(tokens)})
