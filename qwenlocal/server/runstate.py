"""Run-state files: each running server says what it serves in a small JSON file of its own, which
`qwenlocal ps` reads.

The files live in the user runtime dir ($XDG_RUNTIME_DIR/qwenlocal, emptied at log-out and boot),
or, where there is none, in the user state dir. Each is written whole (a temporary file renamed
over it, 0600, so a reader never sees half of one) and removed when the server stops. A server
killed outright leaves its file behind: a reader removes a file whose process is gone, or whose pid
now belongs to a process started after the file's server (the pid was reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from ..config import run_dir

WRITE_EVERY = 1.0  # seconds: counts of requests are written at most this often


class RunState:
    """One server's file: its fields, written whole on every change that matters (loaded, unloaded)
    and at most once a second for the count of requests (`flush()` writes what is left)."""

    def __init__(self, url: str, model: str, file: str, keep_alive: float, name: str = "") -> None:
        now = time.time()
        self.fields: dict = {
            "pid": os.getpid(),
            "url": url,
            "model": model,
            "file": file,
            "started_at": now,
            "state": "loading",  # loading, loaded or idle (unloaded after keep_alive)
            "loaded": False,
            "loaded_since": None,
            "idle_since": None,
            "requests": 0,
            "keep_alive": keep_alive,
        }
        self.path = run_dir() / f"{os.getpid()}{name and '-' + name}.json"
        self._written = 0.0
        self._dirty = False

    def set(self, state: str) -> None:
        """The model is now `state` (loading, loaded, idle): written at once."""
        now = time.time()
        self.fields.update(state=state, loaded=state == "loaded")
        if state == "loaded":
            self.fields.update(loaded_since=now, idle_since=None)
        elif state == "idle":
            self.fields.update(idle_since=now, loaded_since=None)
        self.write()

    def served(self) -> None:
        """One more request answered."""
        self.fields["requests"] += 1
        self._dirty = True
        if time.monotonic() - self._written >= WRITE_EVERY:
            self.write()

    def flush(self) -> None:
        if self._dirty:
            self.write()

    def write(self) -> None:
        """The file, whole or not at all; a folder that cannot be written only loses `ps` its line."""
        import tempfile

        self._dirty, self._written = False, time.monotonic()
        temporary = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.path.parent)  # 0600
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self.fields, out)
            os.replace(temporary, self.path)
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def alive(fields: dict) -> bool:
    """Whether the file's server still runs: its pid is a process that started before the file."""
    import psutil

    try:
        started = psutil.Process(int(fields["pid"])).create_time()
    except (psutil.Error, KeyError, TypeError, ValueError, OverflowError):
        return False
    return started <= float(fields.get("started_at", 0)) + 1.0  # later: the pid was reused


def running() -> list[dict]:
    """The servers running now, from their files, oldest first, each with `rss` (its memory in bytes,
    None when it cannot be read); files of servers that are gone (or unreadable) are removed."""
    import psutil

    servers = []
    where = run_dir()
    for path in sorted(where.glob("*.json")) if where.is_dir() else ():
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            live = isinstance(fields, dict) and alive(fields)
        except (OSError, ValueError):
            live = False
        if not live:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            fields["rss"] = psutil.Process(fields["pid"]).memory_info().rss
        except psutil.Error:
            fields["rss"] = None
        servers.append(fields)
    return sorted(servers, key=lambda s: s.get("started_at", 0))
