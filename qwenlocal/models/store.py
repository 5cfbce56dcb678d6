"""What is on disk, told truthfully: the rows of `qwenlocal list`, the files a name matches for
`rm`, the path and GGUF metadata for `show`, and which catalog file `pull` means. Data only:
`commands/models.py` prints it and asks."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from . import catalog as catalog_mod
from . import download
from .catalog import CatalogTarget, FileTarget, ModelSpec, QuantFile
from .hardware import Want, detect, pick


def target_quant(name: str | None, settings: Settings) -> tuple[ModelSpec, QuantFile]:
    """The catalog file a name stands for; no name (or no quantization): what the pick chooses."""
    cat = catalog_mod.load()
    target = cat.resolve(name) if name is not None else None  # '' is an unknown name, not "none"
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a local file, not a catalog model",
            hint="name a catalog model such as 2b or 9b:q4_k_m",
            code=ExitCode.UNKNOWN_MODEL,
        )
    if isinstance(target, CatalogTarget) and target.quant:
        return target.spec, target.spec.quant(target.quant)
    choice = pick(detect(), cat, Want(model=target.spec if target else None, n_ctx=settings.ctx))
    return choice.model, choice.quant


# -- list ---------------------------------------------------------------------------------------


def model_rows(hw) -> list[dict]:
    """Every catalog file and every other GGUF in the cache: size, status, whether it fits."""
    cat = catalog_mod.load()
    files = {(f.repo, f.file): f for f in download.local_files()}
    parts = {(p.repo, p.file): p for p in download.partials()}
    rows, listed = [], set()
    for spec in cat.models.values():
        for quant in [*spec.quants.values(), *spec.projectors[:1]]:  # a projector: "0.8b:mmproj"
            local = next(
                (files[(c.repo, c.file)] for c in download.sources(spec, quant) if (c.repo, c.file) in files),
                None,
            )
            part = parts.get((quant.repo, quant.file))
            listed |= {(c.repo, c.file) for c in download.sources(spec, quant)}
            if quant.quant == "MMPROJ":  # its memory is counted with the model's when images are used
                fits, speed = quant.bytes * 1.2 < hw.available_ram, None
            else:
                choice = pick(hw, cat, Want(model=spec, quant=quant.quant))
                fits, speed = choice.fits, round(choice.tokens_per_s, 1)
            rows.append(
                {
                    "name": f"{spec.aliases[0]}:{quant.quant.lower()}",
                    "repo": local.repo if local else quant.repo,
                    "file": local.file if local else quant.file,
                    "bytes": local.size if local else quant.bytes,
                    "status": "downloaded" if local else ("partial" if part else "not downloaded"),
                    "have_bytes": local.size if local else (part.have if part else 0),
                    "path": str(local.path) if local else (str(part.path) if part else None),
                    "fits": fits,
                    "tokens_per_s": speed,
                    "user": spec.user,  # from the user's own models.toml
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
                     "tokens_per_s": None, "user": False})  # fmt: skip
    return rows


# -- rm -----------------------------------------------------------------------------------------


def _projector_name(name: str) -> ModelSpec | None:
    """The model whose projector `SIZE:mmproj` names, or None for any other name."""
    base, _, quant = name.strip().lower().partition(":")
    spec = catalog_mod.load().by_alias().get(base)
    return spec if quant == "mmproj" and spec is not None and spec.projector is not None else None


def matching(name: str) -> list[dict]:
    if _projector_name(name):
        wanted = _projector_name(name).aliases[0] + ":mmproj"
        return [r for r in model_rows(detect()) if r["status"] != "not downloaded" and r["name"] == wanted]
    target = catalog_mod.load().resolve(name)
    rows = [r for r in model_rows(detect()) if r["status"] != "not downloaded"]
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a path: qwenlocal only removes what it keeps in the HF cache",
            hint="delete your own files with rm",
            code=ExitCode.USAGE,
        )
    prefix = target.spec.aliases[0] + ":"
    wanted = prefix + target.quant.lower() if target.quant else None
    return [r for r in rows if (r["name"] == wanted if wanted else r["name"].startswith(prefix))]


# -- show ---------------------------------------------------------------------------------------


def path_for(name: str) -> Path:
    spec = _projector_name(name)
    if spec is not None:
        local = download.find_local(spec, spec.projector)
        if local:
            return local
        raise QwenlocalError(
            f"{name} is not downloaded",
            hint=f"run `qwenlocal pull {spec.aliases[0]} --vision`",
            code=ExitCode.NOT_DOWNLOADED,
        )
    target = catalog_mod.load().resolve(name)
    if isinstance(target, FileTarget):
        from ..engine import check_gguf

        check_gguf(target.path)
        return target.path
    quants = [target.spec.quant(target.quant)] if target.quant else list(target.spec.quants.values())
    for quant in quants:
        local = download.find_local(target.spec, quant)
        if local:
            return local
    raise QwenlocalError(
        f"{name} is not downloaded", hint=f"run `qwenlocal pull {name}`", code=ExitCode.NOT_DOWNLOADED
    )


def gguf_metadata(path: Path) -> dict:
    import gguf

    from .ggufheader import read_header

    try:
        header = read_header(path)
    except (ValueError, OSError) as exc:
        raise QwenlocalError(
            f"cannot read {path}: {exc}",
            hint="the file may be truncated or corrupt",
            code=ExitCode.MODEL_FILE,
        ) from None
    value = header.fields.get
    arch = value("general.architecture")
    file_type = value("general.file_type")
    try:
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        quant = str(file_type)
    return {
        "architecture": arch,
        "name": value("general.name"),
        "parameters": sum(header.tensors.values()),
        "quantization": quant,
        "context_length": value(f"{arch}.context_length"),
        "layers": value(f"{arch}.block_count"),
        "embedding_length": value(f"{arch}.embedding_length"),
        "tensors": len(header.tensors),
        "chat_template": "tokenizer.chat_template" in header.fields,
    }


def show(name: str) -> dict:
    """Path, size, sha256 and the GGUF's own metadata of a local model."""
    path = path_for(name)
    real = path.resolve()
    digest = real.name if len(real.name) == 64 and real.parent.name == "blobs" else download.sha256(real)
    return {"path": str(path), "bytes": real.stat().st_size, "sha256": digest} | gguf_metadata(real)
