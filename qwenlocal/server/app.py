"""The HTTP routes (Starlette): /health, /v1/models, /v1/chat/completions.

Every error is answered in OpenAI's shape with its status: 400 for a bad request or a prompt over
the context (code `context_length_exceeded`, with the numbers), 401 without the key, 404/405, 413
for a body over the limit, 429 when the queue is full, 503 while the model loads.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..events import Done
from .openai import ApiError, messages, parse_request
from .reply import Assembler, Reply
from .worker import END, Job, Worker

if TYPE_CHECKING:
    from ..loader import Loaded

MAX_BODY = 32 << 20  # bytes of one request: a long conversation, or a few images as data URIs


@dataclass
class ServerState:
    label: str
    path: Path
    settings: Settings
    api_key: str | None = None
    worker: Worker = field(default_factory=Worker)
    max_body: int = MAX_BODY
    loaded: Loaded | None = None
    load: Callable[[], None] | None = None  # run in the worker thread at start-up

    def identity(self) -> dict:
        """Which model file this server answers with: a client uses it only for the same file."""
        info = {"path": str(self.path.resolve()), "size": self.path.stat().st_size}
        if self.loaded is not None:
            info["n_ctx"] = self.loaded.engine.n_ctx
            info["spec"] = self.loaded.spec.name if self.loaded.spec else None
        return info

    def ready(self) -> Loaded:
        if self.loaded is None:
            raise ApiError(503, "the model is still loading; try again in a moment", code="model_loading")
        return self.loaded

    def defaults(self, think: bool | None):
        settings = self.settings if think is None else replace(self.settings, think=think)
        return self.ready().generate_options(settings)


def api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, QwenlocalError):
        hint = f" ({error.hint})" if error.hint else ""
        if error.code == ExitCode.CONTEXT_OVERFLOW:
            return ApiError(400, error.message + hint, "messages", "context_length_exceeded")
        if error.code in (ExitCode.BAD_INPUT, ExitCode.USAGE):  # a bad image, or none can be seen
            return ApiError(400, error.message + hint, "messages")
        return ApiError(500, error.message + hint)
    return ApiError(500, f"internal error: {type(error).__name__}: {error}")


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if error.status in (429, 503) else None
    return JSONResponse(error.body(), error.status, headers=headers)


def endpoint(handler):
    """A route whose errors, expected or not, are answered in OpenAI's shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as error:
            return error_response(api_error(error))

    return route


def authorize(state: ServerState, request: Request) -> None:
    if state.api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "a valid API key is needed: Authorization: Bearer KEY", code="invalid_api_key")


async def read_json(request: Request, limit: int) -> object:
    length = request.headers.get("content-length", "")
    too_big = ApiError(413, f"the request is over the server's limit of {limit >> 20} MiB", code="too_large")
    if length.isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None


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
                    if item is END:
                        yield "".join(chunks) + sse("[DONE]")
                        return
                    chunks += self._chunks(item, include_usage)
                    if isinstance(item, Exception):
                        yield "".join(chunks)
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
                elif item is not END:
                    self.assembler.feed(item)
        finally:
            self.job.cancel()
        return None if done is None else self.reply.completion(self.assembler, finish, done.stats)


def build_app(state: ServerState) -> Starlette:
    @asynccontextmanager
    async def lifespan(app):
        if state.load is not None:
            asyncio.get_running_loop().run_in_executor(state.worker.executor, state.load)
        yield
        await asyncio.get_running_loop().run_in_executor(None, state.worker.close)
        if state.loaded is not None:
            state.loaded.engine.close()

    @endpoint
    async def health(request: Request) -> Response:
        status = "ok" if state.loaded is not None else "loading"
        body = {"status": status, "model": state.label, "qwenlocal": state.identity()}
        return JSONResponse(body, 200 if state.loaded is not None else 503)

    @endpoint
    async def models(request: Request) -> Response:
        authorize(state, request)
        model = {"id": state.label, "object": "model", "created": int(state.path.stat().st_mtime)}
        model.update(owned_by="qwenlocal", qwenlocal=state.identity())
        return JSONResponse({"object": "list", "data": [model]})

    @endpoint
    async def chat(request: Request) -> Response:
        authorize(state, request)
        loaded = state.ready()
        chat_request = parse_request(await read_json(request, state.max_body), state.defaults)
        messages, options, tools = chat_request.messages, chat_request.options, chat_request.tools
        job = state.worker.submit(lambda: loaded.engine.stream(messages, options, tools))
        assembler = Assembler(None if chat_request.raw_text else tools, options.stop)
        answer = Answer(request, job, Reply(state.label), assembler)
        first = await answer.batch()  # the prompt is read (or refused) before the status is sent
        if isinstance(first[0], Exception):
            job.cancel()
            raise api_error(first[0])
        if chat_request.stream:
            stream = answer.stream(first, chat_request.include_usage)
            return StreamingResponse(
                stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        completion = await answer.collect(first)
        return JSONResponse(completion) if completion is not None else Response(status_code=499)

    @endpoint
    async def prompt(request: Request) -> Response:
        """qwenlocal's own, for `chat --server`: the prompt's tokens (or its text), or 400 when it
        does not fit."""
        authorize(state, request)
        engine = state.ready().engine
        body = await read_json(request, state.max_body)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        chat, think = messages(body.get("messages")), bool(body.get("think"))
        tools = body.get("tools") or None

        def work() -> dict:
            if "generation" in body:
                return {"text": engine.render(chat, think, tools, bool(body["generation"]))}
            return {"tokens": engine.prompt_tokens(chat, think, tools)}

        return JSONResponse(await run_in_threadpool(work))

    async def http_error(request: Request, error: HTTPException) -> Response:
        return error_response(
            ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}")
        )

    routes = [
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/qwenlocal/prompt", prompt, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
