"""`qwenlocal cache`: the prompt states kept on disk between runs (engine/diskstate.py), listed or
cleared."""

from __future__ import annotations

import json as jsonlib
import time
from enum import StrEnum
from typing import Annotated

import typer

from .options import Json, terminal


class Action(StrEnum):
    list = "list"
    clear = "clear"


def cache(
    context: typer.Context,
    action: Annotated[Action, typer.Argument(help="list (the default) or clear.")] = Action.list,
    json: Json = None,
) -> None:
    """The prompt states kept on disk, so that a run starting with the same instructions, file or
    conversation does not read them again: list them (model, tokens, size, last used) or clear them.

    They hold what the prompts said (files 0600 in a 0700 folder); --no-cache (or `cache = false`
    in the config) stops keeping them."""
    import contextlib

    from ..config import state_dir
    from ..engine.diskstate import entries_in, locked, model_of

    term, folder = terminal(context), state_dir()
    entries = sorted(entries_in(folder), key=lambda e: e.used, reverse=True)
    if action == Action.clear:
        if folder.is_dir():
            with locked(folder):
                for entry in entries:
                    with contextlib.suppress(OSError):
                        entry.path.unlink()
        total = sum(e.bytes for e in entries)
        term.warn(f"removed {len(entries)} prompt states ({total / 1024**2:,.1f} MiB) from {folder}")
        return
    if json:
        rows = [
            {
                "model": model_of(e.path),
                "tokens": e.n_tokens,
                "bytes": e.bytes,
                "last_used": e.used,
                "file": e.path.name,
            }
            for e in entries
        ]
        term.write(jsonlib.dumps({"folder": str(folder), "states": rows}) + "\n")
        return
    if not entries:
        term.write(f"no prompt states kept ({folder})\n")
        return
    lines = [f"{'model':<32} {'tokens':>8} {'size':>10}  last used"]
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.used))
        lines.append(f"{model_of(e.path)[:32]:<32} {e.n_tokens:>8,} {e.bytes / 1024**2:>6,.1f} MiB  {used}")
    total = sum(e.bytes for e in entries)
    states = "1 state" if len(entries) == 1 else f"{len(entries)} states"
    lines.append(f"{states}, {total / 1024**2:,.1f} MiB in {folder}")
    term.write("\n".join(lines) + "\n")
