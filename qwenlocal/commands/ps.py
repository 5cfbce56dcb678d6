"""`qwenlocal ps`: the qwenlocal servers running on this machine, from their run-state files
(server/runstate.py)."""

from __future__ import annotations

import json as jsonlib
import time
from typing import Annotated

import typer

from .options import terminal

Json = Annotated[bool, typer.Option("--json", help="Print a JSON list instead of the table.")]
HEADER = ("PID", "ADDRESS", "MODEL", "MEMORY", "STATE", "SINCE", "REQUESTS")


def ps(context: typer.Context, json: Json = False) -> None:
    """List the running qwenlocal servers: address, model, memory, whether the model is loaded
    (or unloaded by --keep-alive, or loading) and since when, requests answered.

    --json prints a list of objects (rss in bytes, times in seconds since the epoch)."""
    from ..server.runstate import running

    term = terminal(context)
    servers = running()
    if not servers:
        term.warn("no qwenlocal servers running")
    if json:
        term.write(jsonlib.dumps(servers) + "\n")
    elif servers:
        term.write(table([row(s) for s in servers]))


def row(server: dict) -> tuple[str, ...]:
    state = server.get("state", "loading")
    since = {"loaded": server.get("loaded_since"), "idle": server.get("idle_since")}.get(state)
    rss = server.get("rss")
    return (
        str(server.get("pid")),
        str(server.get("url")),
        str(server.get("model")),
        "?" if rss is None else memory(rss),
        state,
        clock(since or server.get("started_at")),
        f"{server.get('requests', 0):,}",
    )


def memory(rss: int) -> str:
    return f"{rss / 1024**3:.1f} GiB" if rss >= 1024**3 else f"{rss / 1024**2:,.0f} MiB"


def clock(when: float | None) -> str:
    """A time today as HH:MM:SS; an earlier one with its date."""
    if not when:
        return "-"
    moment = time.localtime(when)
    today = time.localtime()[:3] == moment[:3]
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", moment)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in [HEADER, *rows]
    ]
    return "\n".join(lines) + "\n"
