"""What is on disk, told truthfully: model files in the Hugging Face cache (found, listed with
their partial downloads, removed), the rows of `qwenlocal list`, the files a name matches for `rm`,
the path and GGUF metadata for `show`, which catalog file `pull` means, and the one "not
downloaded" error. Data only: the commands print it and ask; download.py adds files.

Files are in the standard HF cache layout (`models--org--repo/blobs/<sha256>` with a
`snapshots/<commit>/<file>` link), so other tools share them; HF_HOME, HF_HUB_CACHE and
HF_HUB_OFFLINE are honoured because huggingface_hub reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from .catalog import FileTarget, ModelSpec, QuantFile, load, resolve
from .hardware import Want, detect, pick

# (bytes done, total); called first with where the work starts (the bytes a resumed download kept)
Progress = Callable[[int, int], None]


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_dir(repo: str) -> Path:
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_path(quant: QuantFile) -> Path | None:
    """The complete file in the HF cache, or None. Partial downloads are never returned."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id=quant.repo, filename=quant.file)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def sources(model: ModelSpec, quant: QuantFile) -> list[QuantFile]:
    """The default source first, then the same quantization (or projector) from other publishers."""
    if quant.quant == "MMPROJ":
        return [quant] + [p for p in model.projectors if p != quant]
    return [quant] + [alt for alt in model.alternates if alt.quant == quant.quant]


def find_local(model: ModelSpec, quant: QuantFile) -> Path | None:
    for candidate in sources(model, quant):
        path = cached_path(candidate)
        if path is not None:
            return path
    return None


@dataclass(frozen=True)
class Partial:
    repo: str
    file: str
    path: Path
    have: int
    size: int


def _partials_index() -> Path:
    return hub_cache() / ".qwenlocal-partials.json"


def _read_index() -> dict[str, dict]:
    try:
        return json.loads(_partials_index().read_text())
    except (OSError, ValueError):
        return {}


def _write_index(index: dict[str, dict]) -> None:
    path = _partials_index()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)


def partials() -> list[Partial]:
    """Interrupted downloads that the next `pull` resumes (and `rm` removes)."""
    out = []
    for entry in _read_index().values():
        path = Path(entry["path"])
        if path.is_file():
            out.append(Partial(entry["repo"], entry["file"], path, path.stat().st_size, entry["size"]))
    return out


def _forget_partial(path: Path) -> None:
    index = _read_index()
    if index.pop(str(path), None) is not None:
        _write_index(index)


@dataclass(frozen=True)
class LocalFile:
    repo: str
    file: str
    path: Path
    size: int


def local_files() -> list[LocalFile]:
    """Every complete GGUF in the HF cache (whoever downloaded it)."""
    out = []
    root = hub_cache()
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--*")):
        name = repo.name.removeprefix("models--").replace("--", "/")
        seen = set()
        for pointer in sorted(repo.glob("snapshots/*/**/*.gguf")):
            rel = str(pointer.relative_to(next(p for p in pointer.parents if p.parent.name == "snapshots")))
            if rel in seen or not pointer.exists():
                continue
            seen.add(rel)
            out.append(LocalFile(name, rel, pointer, pointer.stat().st_size))
    return out


def remove(repo: str, filename: str) -> int:
    """Remove a file (all its snapshot links, its blob if unused, and any partial). Bytes freed."""
    folder = repo_dir(repo)
    freed = 0
    blobs: set[Path] = set()
    for pointer in folder.glob(f"snapshots/*/{filename}"):
        if pointer.is_symlink():
            blobs.add(pointer.resolve())
        else:
            freed += pointer.stat().st_size
        pointer.unlink()
    still_used = {p.resolve() for p in folder.glob("snapshots/**/*") if p.is_symlink()}
    for blob in blobs - still_used:
        if blob.exists():
            freed += blob.stat().st_size
            blob.unlink()
    for part in partials():
        if part.repo == repo and part.file == filename:
            freed += part.have
            part.path.unlink(missing_ok=True)
            _forget_partial(part.path)
    return freed


def sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    if progress:
        progress(0, size)
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, size)
    return digest.hexdigest()


# -- the catalog's files on disk ---------------------------------------------------------------


def not_downloaded(spec: ModelSpec, missing: list[QuantFile]) -> QwenlocalError:
    """The one error for catalog files that are not in the cache, naming the command that gets
    them (with the model's projector among them: `pull SIZE --vision`, which fetches both)."""
    alias = spec.aliases[0]
    projector = next((f for f in missing if f.quant == "MMPROJ"), None)
    if projector is not None:
        return QwenlocalError(
            f"{spec.display} needs its vision projector to read images, and it is not downloaded "
            f"yet ({projector.bytes / 1e6:.0f} MB)",
            hint=f"run `qwenlocal pull {alias} --vision`, or add --pull",
            code=ExitCode.NOT_DOWNLOADED,
        )
    if not missing:  # none of the model's files (`show 2b`)
        return QwenlocalError(
            f"{spec.display} is not downloaded",
            hint=f"run `qwenlocal pull {alias}`",
            code=ExitCode.NOT_DOWNLOADED,
        )
    quant = missing[0]
    return QwenlocalError(
        f"{spec.display} {quant.quant} is not downloaded yet ({quant.bytes / 1e9:.1f} GB)",
        hint=f"run `qwenlocal pull {alias}:{quant.quant.lower()}`, or add --pull",
        code=ExitCode.NOT_DOWNLOADED,
    )


def target_quant(name: str | None, settings: Settings) -> tuple[ModelSpec, QuantFile]:
    """The catalog file a name stands for (`SIZE:mmproj`: the projector); no name (or no
    quantization): what the pick chooses."""
    cat = load()
    target = resolve(name, cat)
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a local file, not a catalog model",
            hint="name a catalog model such as 2b or 9b:q4_k_m",
            code=ExitCode.UNKNOWN_MODEL,
        )
    if target is not None and target.file is not None:
        return target.spec, target.file
    choice = pick(detect(), cat, Want(model=target.spec if target else None, n_ctx=settings.ctx))
    return choice.model, choice.quant


# -- list ---------------------------------------------------------------------------------------


def model_rows(hw) -> list[dict]:
    """Every catalog file and every other GGUF in the cache: size, status, whether it fits."""
    cat = load()
    files = {(f.repo, f.file): f for f in local_files()}
    parts = {(p.repo, p.file): p for p in partials()}
    rows, listed = [], set()
    for spec in cat.models.values():
        for quant in [*spec.quants.values(), *spec.projectors[:1]]:  # a projector: "0.8b:mmproj"
            local = next(
                (files[(c.repo, c.file)] for c in sources(spec, quant) if (c.repo, c.file) in files),
                None,
            )
            part = parts.get((quant.repo, quant.file))
            listed |= {(c.repo, c.file) for c in sources(spec, quant)}
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


def matching(name: str) -> list[dict]:
    target = resolve(name)
    if isinstance(target, FileTarget):
        raise QwenlocalError(
            f"{name} is a path: qwenlocal only removes what it keeps in the HF cache",
            hint="delete your own files with rm",
            code=ExitCode.USAGE,
        )
    rows = [r for r in model_rows(detect()) if r["status"] != "not downloaded"]
    if target.quant:
        return [r for r in rows if r["name"] == target.name]
    return [r for r in rows if r["name"].startswith(target.spec.aliases[0] + ":")]


# -- show ---------------------------------------------------------------------------------------


def path_for(name: str) -> Path:
    target = resolve(name)
    if isinstance(target, FileTarget):
        from ..engine import check_gguf

        check_gguf(target.path)
        return target.path
    files = [target.file] if target.file else list(target.spec.quants.values())
    for file in files:
        local = find_local(target.spec, file)
        if local:
            return local
    raise not_downloaded(target.spec, [target.file] if target.file else [])


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
    digest = real.name if len(real.name) == 64 and real.parent.name == "blobs" else sha256(real)
    return {"path": str(path), "bytes": real.stat().st_size, "sha256": digest} | gguf_metadata(real)
