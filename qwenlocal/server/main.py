"""Serving: bind the socket, start uvicorn, load the model in the worker thread meanwhile (503 until
it is loaded), stop cleanly on Ctrl-C or SIGTERM (uvicorn's handlers): the answers in flight end at
once with a last event saying so (worker.stop), uvicorn lets their responses finish, the model is
closed, and the process says "stopped" and exits 0. Meanwhile a run-state file says it runs, for
`qwenlocal ps` (runstate.py), and with --keep-alive an idle model is unloaded until the next
request needs it (residency.py)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import DEFAULT_PORT, Settings
from ..errors import ExitCode, QwenlocalError
from ..terminal import Terminal

if TYPE_CHECKING:
    from ..models.loader import Loaded, Plan
    from .access import Access


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    if not loopback(host) and not api_key:
        raise QwenlocalError(
            f"serving on {host} without an API key would let anyone on the network use this machine",
            hint="add --api-key KEY (or QWENLOCAL_API_KEY), or serve on 127.0.0.1",
            code=ExitCode.USAGE,
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line error (a port in use, a host that is not here)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        raise QwenlocalError(
            f"cannot listen on {host}:{port}: {error.strerror or error}",
            hint="another server may be using the port: choose another with --port",
            code=ExitCode.USAGE,
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_server(config, stopping: Callable[[], None]):
    """uvicorn's server, calling `stopping()` as its shutdown begins: before it waits (a few
    seconds) for the responses in flight, which would then be cancelled half-way."""
    import uvicorn

    class Uvicorn(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            stopping()
            await super().shutdown(sockets)

    return Uvicorn(config)


class Server:
    """A bound, not yet running server: `run()` serves until stopped (`stop()`, a signal)."""

    def __init__(
        self,
        term: Terminal,
        settings: Settings,
        planned: Plan,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        max_queue: int = 8,
        cache_mib: int = 1024,
        access: Access | None = None,
    ) -> None:
        import uvicorn

        from .access import Access
        from .app import ServerState, build_app
        from .residency import Residency
        from .runstate import RunState
        from .worker import Worker

        self.term, self.planned, self.cache_mib = term, planned, cache_mib
        path, label = planned.path, planned.label
        access = access or Access.of(host)
        self.socket = bind(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        name = path.name if label == str(path) else label  # a .gguf path's folders are nobody's business
        self.state = ServerState(name, path, settings, api_key, Worker(max_queue), access=access)
        self.state.load = self._load
        keep_alive = settings.keep_alive
        self.runstate = RunState(self.url, name, path.name, keep_alive, str(self.port))
        self.state.residency = Residency(self.state, keep_alive, self._open, self.runstate)
        config = uvicorn.Config(
            build_app(self.state),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
            lifespan="on",
        )
        self.uvicorn = uvicorn_server(config, self.state.worker.stop)
        self.failed: list[QwenlocalError] = []

    @property
    def url(self) -> str:
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    def _load(self) -> None:
        """At start-up, in the worker thread: a model that cannot be loaded stops the server."""
        try:
            loaded = self._open()
        except QwenlocalError as error:
            self.failed.append(error)
            self.uvicorn.should_exit = True
            return
        for message in loaded.warnings:
            self.term.warn(message)
        self.state.loaded = loaded
        self.term.warn(f"ready: {loaded.label}, a context of {loaded.engine.n_ctx} tokens")

    def _open(self) -> Loaded:
        """The model with the server's prompt cache, in the worker thread: at start-up, and again
        for the first request after it was unloaded for being idle (--keep-alive)."""
        from ..models.loader import load

        loaded = load(self.state.settings, self.planned)
        if self.cache_mib:
            loaded.engine.keep_states(self.cache_mib << 20)
        return loaded

    def run(self) -> None:
        label = self.planned.label
        self.term.warn(f"serving {label} on {self.url}/v1 (loading the model; Ctrl-C stops)")
        self.runstate.write()  # for `qwenlocal ps`, until the server stops
        try:
            self.uvicorn.run(sockets=[self.socket])
        except KeyboardInterrupt:  # uvicorn raises the signal it stopped for again, once stopped
            if not self.uvicorn.should_exit:
                raise
        finally:
            self.runstate.remove()
        if self.failed:
            raise self.failed[0]
        self.term.warn("stopped")

    def stop(self) -> None:
        self.uvicorn.should_exit = True
