"""`POST /v1/responses` and `GET /v1/responses/{id}`: a Responses request answered through the same
worker and engine as chat completions, streamed as named server-sent events (`event: TYPE`) or
collected into one response object.

A response made with `store` (the default, as OpenAI's) is kept in memory (ResponseStore): a later
request with its `previous_response_id` goes on from the conversation it ended (its input and its
output; not its instructions, which do not carry over). The engine keeps the state of a conversation
whose beginning it has read, so a chain reads only each request's new tokens
(`usage.input_tokens_details.cached_tokens` says how many were not read again).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..events import Done
from .answer import gather, relay
from .openai import ApiError
from .protocol import api_error, authorize, endpoint
from .reply import Assembler
from .response_output import Output
from .responses import parse
from .worker import END, Job

if TYPE_CHECKING:
    from .app import ServerState


class ResponseStore:
    """The last `size` stored responses, each with the conversation it ends (our messages, without
    the instructions). Message dicts are shared along a chain, not copied."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._kept: OrderedDict[str, tuple[dict, list[dict]]] = OrderedDict()

    def keep(self, response: dict, conversation: list[dict]) -> None:
        self._kept[response["id"]] = (response, conversation)
        self._kept.move_to_end(response["id"])
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def _find(self, id: str, param: str | None) -> tuple[dict, list[dict]]:
        if id not in self._kept:
            message = (
                f"no response {id!r} is kept here: it was made with store: false, by another server, "
                f"or too long ago (the server keeps the last {self.size})"
            )
            raise ApiError(404, message, param, "response_not_found")
        self._kept.move_to_end(id)
        return self._kept[id]

    def conversation(self, id: str) -> list[dict]:
        return self._find(id, "previous_response_id")[1]

    def response(self, id: str) -> dict:
        return self._find(id, None)[0]


def sse(event: dict) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


class ResponsesRoutes:
    """The Responses endpoints, on one server's state (its `responses` store)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/v1/responses", endpoint(self.create), methods=["POST"]),
            Route("/v1/responses/{id}", endpoint(self.retrieve), methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        state = self.state
        asked = parse(await state.body(request), state.defaults, state.responses.conversation)
        try:
            job, first = await state.start(request, asked)
        except ApiError as error:
            raise input_error(error) from None
        output = Output(state.label, asked.echo, Assembler(asked.tools))

        def kept() -> None:
            if asked.store:
                state.responses.keep(output.response(), asked.history + [output.assistant()])

        def more() -> Awaitable[list]:
            return job.batch(request.is_disconnected)

        if asked.stream:
            events = stream(output, job, first, more, kept)
            headers = {"Cache-Control": "no-cache"}
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)

        def answer(done: Done) -> dict:
            output.finish(done)
            return output.response()

        answered = await gather(job, first, more, output.feed, answer)
        if answered is None:
            return Response(status_code=499)  # the client went away
        kept()
        return JSONResponse(answered)

    async def retrieve(self, request: Request) -> Response:
        authorize(self.state.api_key, request)
        return JSONResponse(self.state.responses.response(request.path_params["id"]))


def input_error(error: ApiError) -> ApiError:
    """The error of a prompt that cannot be read, naming `input` (chat completions' `messages`)."""
    if error.param == "messages":
        return ApiError(error.status, error.message, "input", error.code)
    return error


def stream(
    output: Output, job: Job, items: list, more: Callable[[], Awaitable[list]], kept: Callable[[], None]
) -> AsyncIterator[str]:
    """The events as they come (answer.relay's loop); the last is response.completed, .incomplete
    or .failed. The generation is cancelled if the client goes."""

    def step(item: object) -> tuple[list[str], bool]:
        if item is END:
            return [], True
        if isinstance(item, Exception):
            return [*map(sse, output.fail(api_error(item)))], True
        if isinstance(item, Done):
            events = [*map(sse, output.finish(item))]
            kept()
            return events, True
        return [*map(sse, output.feed(item))], False

    return relay(job, items, more, [*map(sse, output.start())], step)
