"""`pull`, `list`, `rm`, `show`: what is on disk, told truthfully."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import catalog as catalog_mod
from . import download
from .catalog import CatalogTarget, FileTarget, ModelSpec, QuantFile
from .config import Settings
from .errors import Exit, QwenlocalError
from .hardware import Want, detect, pick
from .render import DownloadProgress, err_console, is_tty, warn


def _target_quant(name: str | None, settings: Settings) -> tuple[ModelSpec, QuantFile]:
    """The catalog file a name stands for; no name (or no quantization): what the pick chooses."""
    cat = catalog_mod.load()
    target = cat.resolve(name) if name is not None else None  # '' is an unknown name, not "none"
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a local file, not a catalog model",
            hint="name a catalog model such as 2b or 9b:q4_k_m",
            code=Exit.UNKNOWN_MODEL,
        )
    if isinstance(target, CatalogTarget) and target.quant:
        return target.spec, target.spec.quant(target.quant)
    choice = pick(detect(), cat, Want(model=target.spec if target else None, n_ctx=settings.ctx))
    return choice.model, choice.quant


def fetch(spec: ModelSpec, quant: QuantFile) -> Path:
    """Download a catalog file (or an alternate publisher's copy if the default is gone)."""
    local = download.find_local(spec, quant)
    if local:
        return local
    last: QwenlocalError | None = None
    for candidate in download.sources(spec, quant):
        progress = DownloadProgress(f"{candidate.repo}/{candidate.file}")
        verify = DownloadProgress(f"verifying {candidate.file}", plain_every=30.0)
        try:
            return download.pull(candidate, progress=progress, verifying=verify)
        except QwenlocalError as error:
            if error.code != Exit.HUB_NOT_FOUND:
                raise
            last = error
            warn(f"{candidate.repo}/{candidate.file} is not on the hub; trying the next source")
        finally:
            progress.close()
            verify.close()
    assert last is not None
    raise last


def pull(name: str | None, settings: Settings) -> None:
    spec, quant = _target_quant(name, settings)
    if name is None:
        warn(f"pulling {spec.display} {quant.quant}, the pick for this machine (see `qwenlocal doctor`)")
    path = fetch(spec, quant)
    if settings.json:
        sys.stdout.write(
            json.dumps(
                {"model": spec.name, "quant": quant.quant, "path": str(path), "bytes": path.stat().st_size}
            )
            + "\n"
        )
    else:
        sys.stdout.write(f"{path}\n")


def ensure_downloaded(spec: ModelSpec, quant: QuantFile, allow: bool) -> Path:
    """First use of a model: ask on a TTY, pull with --pull, else fail with the command to run."""
    label = f"{spec.aliases[0]}:{quant.quant.lower()}"
    if not allow and is_tty(sys.stdin) and is_tty(sys.stderr) and not download.offline():
        from rich.prompt import Confirm

        question = (
            f"{spec.display} {quant.quant} ({quant.bytes / 1e9:.1f} GB) is not downloaded. Download it now?"
        )
        allow = Confirm.ask(question, default=True, console=err_console())
    if not allow:
        raise QwenlocalError(
            f"{spec.display} {quant.quant} is not downloaded yet ({quant.bytes / 1e9:.1f} GB)",
            hint=f"run `qwenlocal pull {label}`, or add --pull",
            code=Exit.NOT_DOWNLOADED,
        )
    return fetch(spec, quant)


# -- list ---------------------------------------------------------------------------------------


def _rows(hw) -> list[dict]:
    cat = catalog_mod.load()
    files = {(f.repo, f.file): f for f in download.local_files()}
    parts = {(p.repo, p.file): p for p in download.partials()}
    rows, listed = [], set()
    for spec in cat.models.values():
        for quant in spec.quants.values():
            local = next(
                (files[(c.repo, c.file)] for c in download.sources(spec, quant) if (c.repo, c.file) in files),
                None,
            )
            part = parts.get((quant.repo, quant.file))
            choice = pick(hw, cat, Want(model=spec, quant=quant.quant))
            listed |= {(c.repo, c.file) for c in download.sources(spec, quant)}
            rows.append(
                {
                    "name": f"{spec.aliases[0]}:{quant.quant.lower()}",
                    "repo": local.repo if local else quant.repo,
                    "file": local.file if local else quant.file,
                    "bytes": local.size if local else quant.bytes,
                    "status": "downloaded" if local else ("partial" if part else "not downloaded"),
                    "have_bytes": local.size if local else (part.have if part else 0),
                    "path": str(local.path) if local else (str(part.path) if part else None),
                    "fits": choice.fits,
                    "tokens_per_s": round(choice.tokens_per_s, 1),
                }
            )
    # files that are not catalog entries: other GGUFs in the cache, complete or partial
    others = [
        (f.repo, f.file, f.size, f.size, f.path, "downloaded") for k, f in files.items() if k not in listed
    ]
    others += [
        (p.repo, p.file, p.size, p.have, p.path, "partial") for k, p in parts.items() if k not in listed
    ]
    for repo, file, size, have, path, status in others:
        rows.append({"name": f"{repo}/{file}", "repo": repo, "file": file, "bytes": size, "status": status,
                     "have_bytes": have, "path": str(path), "fits": size * 1.2 < hw.available_ram,
                     "tokens_per_s": None})  # fmt: skip
    return rows


def list_models(settings: Settings, show_all: bool = True) -> None:
    rows = _rows(detect())
    if settings.json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    from rich.console import Console
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
        table.add_row(r["name"], f"{r['bytes'] / 1e9:.2f} GB", status, fits, f"{r['repo']}/{r['file']}")
    Console(soft_wrap=False, width=None if is_tty(sys.stdout) else 200).print(table)


# -- rm -----------------------------------------------------------------------------------------


def _matching(name: str) -> list[dict]:
    target = catalog_mod.load().resolve(name)
    rows = [r for r in _rows(detect()) if r["status"] != "not downloaded"]
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a path: qwenlocal only removes what it keeps in the HF cache",
            hint="delete your own files with rm",
            code=Exit.USAGE,
        )
    prefix = target.spec.aliases[0] + ":"
    wanted = prefix + target.quant.lower() if target.quant else None
    return [r for r in rows if (r["name"] == wanted if wanted else r["name"].startswith(prefix))]


def remove(name: str, settings: Settings, yes: bool) -> None:
    rows = _matching(name)
    if not rows:
        raise QwenlocalError(
            f"nothing of {name} is on disk", hint="see `qwenlocal list`", code=Exit.NOT_DOWNLOADED
        )
    total = sum(r["have_bytes"] for r in rows)
    names = ", ".join(f"{r['name']} ({r['status']})" for r in rows)
    if not yes:
        if not (is_tty(sys.stdin) and is_tty(sys.stderr)):
            raise QwenlocalError(
                f"would remove {names}: {total / 1e9:.2f} GB",
                hint="add --yes to confirm when not on a terminal",
                code=Exit.USAGE,
            )
        from rich.prompt import Confirm

        if not Confirm.ask(
            f"Remove {names} and free {total / 1e9:.2f} GB?", default=False, console=err_console()
        ):
            warn("nothing removed")
            return
    freed = sum(download.remove(r["repo"], r["file"]) for r in rows)
    if settings.json:
        sys.stdout.write(json.dumps({"removed": [r["name"] for r in rows], "freed_bytes": freed}) + "\n")
    else:
        warn(f"removed {names}: {freed / 1e9:.2f} GB freed")


# -- show ---------------------------------------------------------------------------------------


def _path_for(name: str) -> Path:
    target = catalog_mod.load().resolve(name)
    if isinstance(target, FileTarget):
        from .llamacpp import check_gguf

        check_gguf(target.path)
        return target.path
    quants = [target.spec.quant(target.quant)] if target.quant else list(target.spec.quants.values())
    for quant in quants:
        local = download.find_local(target.spec, quant)
        if local:
            return local
    raise QwenlocalError(
        f"{name} is not downloaded", hint=f"run `qwenlocal pull {name}`", code=Exit.NOT_DOWNLOADED
    )


def gguf_metadata(path: Path) -> dict:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError) as exc:  # IndexError: metadata cut short
        raise QwenlocalError(
            f"cannot read {path}: {exc}", hint="the file may be truncated or corrupt", code=Exit.MODEL_FILE
        ) from None

    def value(key: str):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    file_type = value("general.file_type")
    try:
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        quant = str(file_type)
    return {
        "architecture": arch,
        "name": value("general.name"),
        "parameters": int(sum(int(t.n_elements) for t in reader.tensors)),
        "quantization": quant,
        "context_length": value(f"{arch}.context_length"),
        "layers": value(f"{arch}.block_count"),
        "embedding_length": value(f"{arch}.embedding_length"),
        "tensors": len(reader.tensors),
        "chat_template": reader.get_field("tokenizer.chat_template") is not None,
    }


def show(name: str, settings: Settings) -> None:
    path = _path_for(name)
    real = path.resolve()
    digest = real.name if len(real.name) == 64 and real.parent.name == "blobs" else download.sha256(real)
    info = {"path": str(path), "bytes": real.stat().st_size, "sha256": digest} | gguf_metadata(real)
    if settings.json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return
    width = max(map(len, info))
    for key, val in info.items():
        if key == "parameters":
            val = f"{val / 1e9:.2f} B ({val:,})"
        elif key == "bytes":
            val = f"{val / 1e9:.2f} GB ({val:,} bytes)"
        elif key == "chat_template":
            val = "yes" if val else "no"
        sys.stdout.write(f"{key.replace('_', ' '):<{width}}  {val}\n")
