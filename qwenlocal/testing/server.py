"""The real `qwenlocal serve` (uvicorn, the app, the worker, the engine) on a free loopback port, in a
thread of the test process, so that tests can use real HTTP clients against it and look at its
state (the engine's cache, the worker's queue) afterwards."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path


def wait_until_ready(url: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def serving(
    model: Path,
    ctx: int = 2048,
    api_key: str | None = None,
    max_queue: int = 8,
    cache_mib: int = 0,
    ready: bool = True,
    mmproj: Path | None = None,
    allow_origins: tuple[str, ...] = (),
    allow_hosts: tuple[str, ...] = (),
    **settings,
) -> Iterator:
    """A running server for the GGUF `model` (and its projector `mmproj`); `ready=False` does not
    load it (503 for ever)."""
    from ..config import Settings
    from ..models.loader import plan
    from ..server.access import Access
    from ..server.main import Server
    from ..terminal import Terminal

    chosen = Settings(model=str(model), ctx=ctx, **settings)
    term = Terminal(io.StringIO(), io.StringIO(), io.StringIO())
    access = Access.of("127.0.0.1", allow_origins, allow_hosts)
    planned = plan(chosen)
    if mmproj is not None:
        planned = replace(planned, projector=mmproj)
    server = Server(term, chosen, planned, "127.0.0.1", 0, api_key, max_queue, cache_mib, access)
    if not ready:
        server.state.load = None
    thread = threading.Thread(target=server.run, name="qwenlocal-test-server", daemon=True)
    thread.start()
    try:
        if ready:
            wait_until_ready(server.url)
        else:
            while not server.uvicorn.started:
                time.sleep(0.02)
        yield server
    finally:
        server.stop()
        thread.join(60)
