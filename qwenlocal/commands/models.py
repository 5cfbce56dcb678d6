"""`qwenlocal pull`, `list`, `rm` and `show`: the models on disk (the data comes from `models/store.py`)."""

from __future__ import annotations

import json as json_mod
from typing import Annotated

import typer

from ..errors import ExitCode, QwenlocalError
from .options import Ctx, Json, Offline, Yes, complete_model, settings, terminal


def pull(
    context: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(help="Catalog name (2b, 9b:q8_0). Default: the pick.", autocompletion=complete_model),
    ] = None,
    ctx: Ctx = None,
    json: Json = None,
    offline: Offline = False,
    vision: Annotated[
        bool, typer.Option("--vision", help="Also download the model's vision projector (for images).")
    ] = False,
) -> None:
    """Download a model into the Hugging Face cache: resumable, verified against the hub's sha256."""
    from ..models.store import target_quant
    from .loading import fetch

    term = terminal(context)
    chosen = settings(offline, ctx=ctx, json=json)
    spec, quant = target_quant(model, chosen)
    if model is None:
        term.warn(f"pulling {spec.display} {quant.quant}, the pick for this machine (see `qwenlocal doctor`)")
    files = [quant] + ([spec.projector] if vision and spec.projector else [])
    if vision and spec.projector is None:
        raise QwenlocalError(f"{spec.display} has no vision projector in the catalog", code=ExitCode.USAGE)
    for q in files:
        path = fetch(term, spec, q)
        if chosen.json:
            info = {"model": spec.name, "quant": q.quant, "path": str(path), "bytes": path.stat().st_size}
            term.write(json_mod.dumps(info) + "\n")
        else:
            term.write(f"{path}\n")


def list_(context: typer.Context, json: Json = None) -> None:
    """Every catalog model and every local GGUF: size, downloaded or partial, whether it fits here."""
    from ..models.hardware import detect
    from ..models.store import model_rows

    term = terminal(context)
    rows = model_rows(detect())
    if settings(json=json).json:
        term.write(json_mod.dumps(rows, indent=1) + "\n")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("model", "size", "status", "fits here", "repo/file"):
        table.add_column(column, no_wrap=column != "repo/file")
    for r in rows:
        status = r["status"]
        if status == "partial":
            status = f"partial {100 * r['have_bytes'] / max(r['bytes'], 1):.0f}%"
        fits = ("yes" if r["fits"] else "no") + (
            f", ~{r['tokens_per_s']:.0f} tok/s" if r["tokens_per_s"] else ""
        )
        name = r["name"] + (" (user)" if r["user"] else "")  # from the user's own models.toml
        table.add_row(name, f"{r['bytes'] / 1e9:.2f} GB", status, fits, f"{r['repo']}/{r['file']}")
    term.table(table)


def rm(
    context: typer.Context,
    model: Annotated[
        str,
        typer.Argument(
            help="2b:q4_k_m for one file, 2b:mmproj for its vision projector, 2b for every file of a model.",
            autocompletion=complete_model,
        ),
    ],
    yes: Yes = False,
    json: Json = None,
) -> None:
    """Remove downloaded (or partial) model files from the cache and free the space."""
    from ..models.store import matching, remove

    term = terminal(context)
    json = settings(json=json).json
    rows = matching(model)
    if not rows:
        raise QwenlocalError(
            f"nothing of {model} is on disk", hint="see `qwenlocal list`", code=ExitCode.NOT_DOWNLOADED
        )
    total = sum(r["have_bytes"] for r in rows)
    names = ", ".join(f"{r['name']} ({r['status']})" for r in rows)
    if not yes:
        if not term.can_ask:
            raise QwenlocalError(
                f"would remove {names}: {total / 1e9:.2f} GB",
                hint="add --yes to confirm when not on a terminal",
                code=ExitCode.USAGE,
            )
        if not term.confirm(f"Remove {names} and free {total / 1e9:.2f} GB?", default=False):
            term.warn("nothing removed")
            return
    freed = sum(remove(r["repo"], r["file"]) for r in rows)
    if json:
        term.write(json_mod.dumps({"removed": [r["name"] for r in rows], "freed_bytes": freed}) + "\n")
    else:
        term.warn(f"removed {names}: {freed / 1e9:.2f} GB freed")


def show(
    context: typer.Context,
    model: Annotated[str, typer.Argument(help="Catalog name or .gguf path.", autocompletion=complete_model)],
    json: Json = None,
) -> None:
    """Path, size, sha256 and the GGUF's own metadata of a local model."""
    from ..models.store import show as info_of

    term = terminal(context)
    json = settings(json=json).json
    info = info_of(model)
    if json:
        term.write(json_mod.dumps(info, indent=1) + "\n")
        return
    width = max(map(len, info))
    for key, val in info.items():
        if key == "parameters":
            val = f"{val / 1e9:.2f} B ({val:,})"
        elif key == "bytes":
            val = f"{val / 1e9:.2f} GB ({val:,} bytes)"
        elif key == "chat_template":
            val = "yes" if val else "no"
        term.write(f"{key.replace('_', ' '):<{width}}  {val}\n")
