"""Serving: bind the socket, start uvicorn, load the model in the worker thread meanwhile (503 until
it is loaded), stop cleanly on Ctrl-C or SIGTERM (uvicorn's handlers: in-flight answers get a few
seconds, then are cancelled, which stops their generation)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..hardware import Choice
from ..terminal import Terminal

DEFAULT_PORT = 11435  # beside Ollama's 11434


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


def serve(
    term: Terminal,
    settings: Settings,
    located: tuple[Choice, Path, str],
    host: str,
    port: int,
    api_key: str | None,
    max_queue: int,
    cache_mib: int,
) -> None:
    import uvicorn

    from ..loader import load
    from .app import ServerState, build_app
    from .worker import Worker

    choice, path, label = located
    sock = bind(host, port)
    port = sock.getsockname()[1]
    state = ServerState(label, path, settings, api_key, Worker(max_queue))
    config = uvicorn.Config(
        build_app(state), log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="on"
    )
    server = uvicorn.Server(config)
    failed: list[QwenlocalError] = []

    def load_model() -> None:
        try:
            loaded = load(settings, choice, path, label)
        except QwenlocalError as error:
            failed.append(error)
            server.should_exit = True
            return
        for message in loaded.warnings:
            term.warn(message)
        if cache_mib:
            from ..engine.promptcache import PromptCache

            model = loaded.engine.model
            model.cache.stash = PromptCache(model.lib, model.ctx, cache_mib << 20)
        state.loaded = loaded
        term.warn(f"ready: {label}, a context of {loaded.engine.n_ctx} tokens")

    state.load = load_model
    shown = f"[{host}]" if ":" in host else host
    term.warn(f"serving {label} on http://{shown}:{port}/v1 (loading the model; Ctrl-C stops)")
    server.run(sockets=[sock])
    if failed:
        raise failed[0]
