"""Model residency (`serve --keep-alive`): after that long with no request in flight or waiting, the
model is unloaded (its memory given back), and the next request that needs it loads it again and
waits for that, rather than getting a 503.

Loads, unloads and generations all run in the worker's one thread, in the order they were asked
for, so a model is never closed under a generation. A middleware, in front of every route, counts
the requests in flight and loads the model first for those that need it (POSTs: every route that
uses the model is one), so that routes keep calling `ServerState.ready()` alone. A task started
with the app ticks once a second: it writes the run-state file's pending counts and unloads the
model once it has been idle long enough.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request

from .openai import ApiError
from .protocol import api_error, authorize, error_response
from .worker import shutting_down

if TYPE_CHECKING:
    from ..models.loader import Loaded
    from .app import ServerState
    from .runstate import RunState

TICK = 1.0  # seconds between looks at whether the model has been idle long enough


class Residency:
    """Whether the model is loaded, and the load or unload that changes it (on the event loop)."""

    def __init__(
        self,
        state: ServerState,
        keep_alive: float,
        reopen: Callable[[], Loaded],
        runstate: RunState | None = None,
    ) -> None:
        self.state, self.keep_alive, self.reopen, self.runstate = state, keep_alive, reopen, runstate
        self.unloaded = False  # unloaded after keep_alive (not: still loading at start-up)
        self.in_flight = 0  # requests that went in and have not finished their response
        self.last = time.monotonic()  # the last request's start or end
        self.remembered: dict = {}  # what /health says of the model while it is unloaded
        self._lock = asyncio.Lock()  # one load or unload at a time
        self._reload: asyncio.Future | None = None
        self.tick = TICK

    async def watch(self, loading: asyncio.Future | None) -> None:
        """The app's task: the start-up load's end, then a tick a second until cancelled."""
        if loading is not None:
            await loading
            self.last = time.monotonic()  # idle from now, not from the start of a long load
            if self.state.loaded is not None:
                self._mark("loaded")
        while True:
            await asyncio.sleep(self.tick)
            if self.runstate is not None:
                self.runstate.flush()
            await self.unload_if_idle()

    async def ensure_loaded(self) -> None:
        """Before a request that needs the model: load it again if it was unloaded. The load goes
        on if the request is cancelled meanwhile (the model is then there for the next)."""
        self.last = time.monotonic()
        if not self.unloaded:
            return
        if self.state.worker.stopping:
            raise shutting_down()
        async with self._lock:  # the requests that came while idle wait for one load
            if self.unloaded:
                if self._reload is None:
                    self._mark("loading")
                    loop = asyncio.get_running_loop()
                    self._reload = loop.run_in_executor(self.state.worker.executor, self.reopen)
                    self._reload.add_done_callback(self._reloaded)
                await asyncio.shield(self._reload)  # its error, if any, is this request's answer
        self.last = time.monotonic()

    def _reloaded(self, future: asyncio.Future) -> None:
        self._reload = None
        if future.cancelled() or future.exception() is not None:
            self._mark("idle")
            return
        self.state.loaded, self.unloaded = future.result(), False
        self.last = time.monotonic()
        self._mark("loaded")

    def idle(self) -> bool:
        """Loaded, and nothing asked of it for keep_alive seconds."""
        if not self.keep_alive or self.state.loaded is None or self._lock.locked():
            return False
        if self.in_flight or self.state.worker.active:
            return False
        return time.monotonic() - self.last >= self.keep_alive

    async def unload_if_idle(self) -> bool:
        if not self.idle():
            return False
        async with self._lock:  # free (idle() says so): taken at once, before any request sees it
            loaded, self.state.loaded, self.unloaded = self.state.loaded, None, True
            self.remembered = {
                "n_ctx": loaded.engine.n_ctx,
                "spec": loaded.spec.name if loaded.spec else None,
            }
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.state.worker.executor, loaded.engine.close)
            del loaded  # the last reference: the prompt cache's saved states go with it
            self._mark("idle")
        return True

    def finished(self, served: bool) -> None:
        """A request that needed the model has had its answer (`served`: it had the key; one
        without does not keep the model loaded)."""
        if not served:
            return
        self.last = time.monotonic()
        if self.runstate is not None:
            self.runstate.served()

    def _mark(self, state: str) -> None:
        if self.runstate is not None:
            self.runstate.set(state)


class Resident:
    """The middleware: the model loaded (again) before the routes that need it, and the requests in
    flight counted (an idle model is never unloaded under one). A request without the API key does
    not load it: the route answers it 401."""

    def __init__(self, app, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        residency = self.state.residency
        if residency is None or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        residency.in_flight += 1
        authorized = self._authorized(scope)
        try:
            if authorized:
                try:
                    await residency.ensure_loaded()
                except Exception as error:
                    await error_response(api_error(error))(scope, receive, send)
                    return
            await self.app(scope, receive, send)
        finally:
            residency.in_flight -= 1
            residency.finished(authorized)

    def _authorized(self, scope) -> bool:
        try:
            authorize(self.state.api_key, Request(scope))
        except ApiError:
            return False
        return True
