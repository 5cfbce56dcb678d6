"""Downloading a model file into the Hugging Face cache: resumable, verified (finding, listing
and removing what is there is store.py's).

Files go into the standard HF cache layout (`models--org--repo/blobs/<sha256>` with a
`snapshots/<commit>/<file>` link), so other tools share them; HF_HOME, HF_HUB_CACHE, HF_ENDPOINT,
HF_TOKEN and HF_HUB_OFFLINE are honoured because huggingface_hub reads them.

Why not plain `hf_hub_download`: huggingface_hub 2.4 writes each download to a process-unique
`<etag>.<random>.incomplete` file, so after Ctrl-C or a killed process the next download starts
from zero and the old partial file stays behind. Here the partial file is `blobs/<sha256>.incomplete`
(a stable name, guarded by a file lock), and the next `pull` resumes it with an HTTP Range request
through huggingface_hub's own `http_get` (private: `hub_http_get` is the one place that calls
it). A complete file is verified against the hub's LFS sha256 before it is moved into place;
nothing half-written is ever used as a model.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import ExitCode, QwenlocalError
from .catalog import QuantFile
from .store import (
    Progress,
    _forget_partial,
    _read_index,
    _write_index,
    cached_path,
    hub_cache,
    offline,
    repo_dir,
    sha256,
)

REVISION = "main"


# -- pull -------------------------------------------------------------------------------------


class _Counting:
    """A file wrapper that reports progress as huggingface_hub's http_get writes to it."""

    def __init__(self, f, done: int, total: int, progress: Progress | None) -> None:
        self.f, self.done, self.total, self.progress = f, done, total, progress

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        self.done += len(data)
        if self.progress:
            self.progress(self.done, self.total)
        return n

    def seek(self, *args):  # http_get rewinds when a server ignores the Range header
        result = self.f.seek(*args)
        self.done = self.f.tell()
        return result

    def tell(self) -> int:
        return self.f.tell()

    def truncate(self, *args):
        return self.f.truncate(*args)


def hub_http_get(url: str, f: _Counting, have: int, size: int, filename: str) -> None:
    """Append the bytes of `url` after the first `have` to `f` (an HTTP Range request, retried on
    dropped connections); a server that ignores the Range gets `f` rewound (seek, tell, truncate)
    and the whole file. Raises huggingface_hub's errors.

    The one call of a private huggingface_hub function (no public API resumes a download into a
    file we name): tests/test_hub_seam.py fails if its shape changes; pyproject pins the majors."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    http_get(
        url,
        f,
        resume_size=have,
        headers=build_hf_headers(),
        expected_size=size,
        displayed_filename=filename,
    )


def hub_error(exc: Exception, quant: QuantFile) -> QwenlocalError:
    """huggingface_hub's exceptions as messages with a hint and an exit code."""
    from huggingface_hub import errors

    where = f"{quant.repo}/{quant.file}"
    if isinstance(exc, errors.GatedRepoError):
        return QwenlocalError(
            f"{quant.repo} is gated: accept its terms on the hub first",
            hint="log in with `hf auth login` or set HF_TOKEN",
            code=ExitCode.HUB_AUTH,
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return QwenlocalError(
                f"{quant.repo} was not found or is private (HTTP 401)",
                hint="check the name; for a private repo log in with `hf auth login` or set HF_TOKEN",
                code=ExitCode.HUB_AUTH,
            )
        return QwenlocalError(
            f"repository {quant.repo} not found on the hub",
            code=ExitCode.HUB_NOT_FOUND,
            hint="the catalog may be out of date: try another source with --model 2b:q8_0",
        )
    if isinstance(exc, errors.EntryNotFoundError | errors.RevisionNotFoundError):
        return QwenlocalError(
            f"{where} not found on the hub",
            code=ExitCode.HUB_NOT_FOUND,
            hint="try another quantization, e.g. `qwenlocal pull 2b:q4_k_m`",
        )
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return offline_error(quant)
    if isinstance(exc, errors.HfHubHTTPError):
        return QwenlocalError(
            f"the hub answered an error for {where}: {str(exc).splitlines()[0]}",
            hint="try again later: the same command resumes the partial download, which is kept",
            code=ExitCode.NETWORK,
        )
    return QwenlocalError(
        f"cannot reach the hub for {where}: {type(exc).__name__}: {exc}".strip(),
        hint="check the connection (or HF_ENDPOINT), then run the same command to resume",
        code=ExitCode.NETWORK,
    )


def offline_error(quant: QuantFile) -> QwenlocalError:
    return QwenlocalError(
        f"offline, and {quant.repo}/{quant.file} is not in the cache",
        hint="connect and run `qwenlocal pull` without --offline (unset HF_HUB_OFFLINE)",
        code=ExitCode.OFFLINE,
    )


def _check_space(directory: Path, needed: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise QwenlocalError(
            f"not enough disk space: {needed / 1e9:.2f} GB more needed, "
            f"{free / 1e9:.2f} GB free in {directory}",
            hint="free some space (`qwenlocal rm` removes models), or point HF_HOME at a larger disk",
            code=ExitCode.DISK_FULL,
        )


def _link(repo: Path, commit: str, filename: str, blob: Path) -> Path:
    """snapshots/<commit>/<file> -> ../../blobs/<sha256>, and refs/main -> commit (the HF layout)."""
    pointer = repo / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (some Windows setups): a copy, as huggingface_hub does
        shutil.copyfile(blob, pointer)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / REVISION).write_text(commit)
    return pointer


def pull(
    quant: QuantFile,
    progress: Progress | None = None,
    verifying: Progress | None = None,
    force: bool = False,
) -> Path:
    """Download one file into the HF cache (resuming a partial one) and verify it. Returns its path."""
    existing = cached_path(quant)
    if existing and not force:
        return existing
    if offline():
        raise offline_error(quant)
    from filelock import FileLock

    meta = _metadata(quant)
    repo = repo_dir(quant.repo)
    blobs = repo / "blobs"
    blob = blobs / meta.etag
    partial = blobs / f"{meta.etag}.incomplete"
    blobs.mkdir(parents=True, exist_ok=True)
    (hub_cache() / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(hub_cache() / ".locks" / f"qwenlocal-{meta.etag}.lock")):
        if blob.is_file() and not force:
            return _link(repo, meta.commit_hash, quant.file, blob)
        have = partial.stat().st_size if partial.exists() else 0
        if have > meta.size:  # not ours, or the file changed: start again
            partial.unlink()
            have = 0
        _check_space(blobs, meta.size - have)
        index = _read_index()
        index[str(partial)] = {
            "repo": quant.repo,
            "file": quant.file,
            "size": meta.size,
            "path": str(partial),
        }
        _write_index(index)
        if progress:  # where it starts, before a byte arrives: "resuming" only when bytes were kept
            progress(have, meta.size)
        _fetch(quant, meta, partial, have, progress)
        _verify(quant, meta, partial, verifying)
        os.replace(partial, blob)
        _forget_partial(partial)
        return _link(repo, meta.commit_hash, quant.file, blob)


def _metadata(quant: QuantFile):
    """The hub's size, hash (etag), commit and download location for one file."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    url = hf_hub_url(quant.repo, quant.file, revision=REVISION)
    try:
        meta = get_hf_file_metadata(url)
    except Exception as exc:
        raise hub_error(exc, quant) from None
    if not meta.etag or not meta.commit_hash or meta.size is None:
        raise QwenlocalError(
            f"the hub sent no size, hash or commit for {quant.repo}/{quant.file}",
            hint="check HF_ENDPOINT",
            code=ExitCode.NETWORK,
        )
    return meta


def _fetch(quant: QuantFile, meta, partial: Path, have: int, progress: Progress | None) -> None:
    """Append the rest of the file to `partial`, from byte `have` on."""
    try:
        with partial.open("ab") as f:
            hub_http_get(meta.location, _Counting(f, have, meta.size, progress), have, meta.size, quant.file)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise QwenlocalError(
                f"the disk filled up while downloading {quant.file} "
                f"(kept {partial.stat().st_size / 1e9:.2f} GB)",
                hint="free some space and run the same command to resume",
                code=ExitCode.DISK_FULL,
            ) from None
        raise hub_error(exc, quant) from None
    except Exception as exc:
        raise hub_error(exc, quant) from None


def _verify(quant: QuantFile, meta, partial: Path, verifying: Progress | None) -> None:
    """Check the download against the hub's sha256; a corrupt one is removed."""
    expected = meta.etag if len(meta.etag) == 64 else None  # LFS files: the etag is the sha256
    if expected and sha256(partial, verifying) != expected:
        partial.unlink()
        _forget_partial(partial)
        raise QwenlocalError(
            f"{quant.file} does not match the hub's sha256 {expected[:12]}...: the download was corrupt "
            "and has been removed",
            hint="run the same command to download it again",
            code=ExitCode.CHECKSUM,
        )
