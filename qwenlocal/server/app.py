"""The HTTP routes (Starlette): /health, /v1/models, /v1/chat/completions (and /v1/responses:
response_routes.py), and qwenlocal's own /qwenlocal/prompt; the server's state; the app that puts
them together, behind access.py's filter.

Every error is answered in OpenAI's shape (Anthropic's on /v1/messages: anthropic_answer.py) with
its status (protocol.py): 400 for a bad request or a prompt over the context (code
`context_length_exceeded`, with the numbers), 401 without the key, 403 for a page or a Host name not
allowed and 415 for a body not sent as JSON (access.py), 404/405, 413 for a body over the limit, 429
when the queue is full, 503 while the model loads (or the server stops).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..config import Settings
from ..engine.remote import fingerprint
from .access import Access, Guard
from .answer import Answer
from .anthropic_answer import MessagesRoutes
from .openai import ApiError, ChatRequest, messages, parse_request, tools
from .protocol import api_error, authorize, endpoint, http_error, read_json
from .reply import Assembler, Reply
from .residency import Resident
from .response_routes import ResponsesRoutes, ResponseStore
from .worker import Job, Worker

if TYPE_CHECKING:
    from ..models.loader import Loaded
    from .residency import Residency

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
    access: Access = field(default_factory=Access)  # who may call (loopback only, by default)
    residency: Residency | None = None  # unloads an idle model, loads it again (--keep-alive)
    responses: ResponseStore = field(default_factory=ResponseStore)  # for previous_response_id

    def identity(self) -> dict:
        """Which model file this server answers with (a client uses it only for the same file),
        fingerprinted: /health is open, and the file's path says who and where the user is."""
        info = {"file": fingerprint(self.path), "size": self.path.stat().st_size}
        if self.loaded is not None:
            info["n_ctx"] = self.loaded.engine.n_ctx
            info["spec"] = self.loaded.spec.name if self.loaded.spec else None
        elif self.residency is not None:
            info.update(self.residency.remembered)  # unloaded while idle: the same model comes back
        return info

    def status(self) -> str:
        """ok, idle (unloaded after --keep-alive: the next request loads it again) or loading."""
        if self.loaded is not None:
            return "ok"
        return "idle" if self.residency is not None and self.residency.unloaded else "loading"

    def ready(self) -> Loaded:
        if self.loaded is None:
            raise ApiError(503, "the model is still loading; try again in a moment", code="model_loading")
        return self.loaded

    async def body(self, request: Request) -> object:
        """How every route that uses the model begins: the key checked, the model there (503 while
        it loads), the request's JSON body read (within the size limit)."""
        authorize(self.api_key, request)
        self.ready()
        return await read_json(request, self.max_body)

    async def start(self, request: Request, asked) -> tuple[Job, list]:
        """Start answering `asked` (its messages, options and tools) in the worker, and wait until
        the prompt is read: the job and its first events, or (raised, before any status is sent)
        the error that refused the prompt. Every API's route begins so."""
        loaded = self.ready()
        job = self.worker.submit(lambda: loaded.engine.stream(asked.messages, asked.options, asked.tools))
        first = await job.batch(request.is_disconnected)
        if isinstance(first[0], Exception):
            job.cancel()
            raise api_error(first[0])
        return job, first

    def defaults(self, think: bool | None):
        settings = self.settings if think is None else replace(self.settings, think=think)
        return self.ready().generate_options(settings)


class Routes:
    """The endpoints, on one server's state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def health(self, request: Request) -> Response:
        state = self.state
        status = state.status()
        body = {"status": status, "model": state.label, "qwenlocal": state.identity()}
        return JSONResponse(body, 503 if status == "loading" else 200)

    async def models(self, request: Request) -> Response:
        state = self.state
        authorize(state.api_key, request)
        model = {"id": state.label, "object": "model", "created": int(state.path.stat().st_mtime)}
        model.update(owned_by="qwenlocal", qwenlocal=state.identity())
        return JSONResponse({"object": "list", "data": [model]})

    async def chat(self, request: Request) -> Response:
        state = self.state
        chat = parse_request(await state.body(request), state.defaults)
        job, first = await state.start(request, chat)
        assembler = Assembler(None if chat.raw_text else chat.tools, chat.options.stop)
        return await respond(Answer(request, job, Reply(state.label), assembler), first, chat)

    async def prompt(self, request: Request) -> Response:
        """qwenlocal's own, for `chat --server`: the prompt's tokens (or its text), or 400 when it
        does not fit."""
        state = self.state
        body = await state.body(request)
        engine = state.ready().engine
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        chat, think, offered = messages(body.get("messages")), bool(body.get("think")), tools(body)

        def work() -> dict:
            if "generation" in body:
                return {"text": engine.render(chat, think, offered, bool(body["generation"]))}
            return {"tokens": engine.prompt_tokens(chat, think, offered)}

        return JSONResponse(await run_in_threadpool(work))


async def respond(answer: Answer, first: list, chat: ChatRequest) -> Response:
    """The answer as server-sent events, or (not streamed) as one completion when it is done."""
    if chat.stream:
        stream = answer.stream(first, chat.include_usage)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    completion = await answer.collect(first)
    return JSONResponse(completion) if completion is not None else Response(status_code=499)


def lifespan(state: ServerState):
    """Start loading the model in the worker thread (503 until it is loaded); on shutdown, stop the
    answers in flight, then close the model."""

    @asynccontextmanager
    async def run(app):
        loop = asyncio.get_running_loop()
        loading = loop.run_in_executor(state.worker.executor, state.load) if state.load else None
        watch = loop.create_task(state.residency.watch(loading)) if state.residency else None
        yield
        if watch is not None:
            watch.cancel()
        await asyncio.get_running_loop().run_in_executor(None, state.worker.close)
        if state.loaded is not None:
            state.loaded.engine.close()

    return run


def build_app(state: ServerState) -> Starlette:
    routes = Routes(state)
    table = [
        Route("/health", endpoint(routes.health)),
        Route("/v1/models", endpoint(routes.models)),
        Route("/v1/chat/completions", endpoint(routes.chat), methods=["POST"]),
        Route("/qwenlocal/prompt", endpoint(routes.prompt), methods=["POST"]),
        *MessagesRoutes(state).routes(),  # Anthropic's Messages API
        *ResponsesRoutes(state).routes(),  # OpenAI's Responses API
    ]
    return Starlette(
        routes=table,
        middleware=[Middleware(Guard, access=state.access), Middleware(Resident, state=state)],
        lifespan=lifespan(state),
        exception_handlers={HTTPException: http_error},
    )
