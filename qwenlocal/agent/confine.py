"""The one path-safety layer: every file operation of the agent, the tools and undo alike.

Paths are opened one folder at a time from a handle on the workspace with O_NOFOLLOW, so a symlink
(or a folder swapped for one since it was checked) is never followed, and nothing outside is
reached. Files are replaced atomically (a new file, then rename), never written into: a hard link
to a file outside keeps its content, and a crash leaves the old file or the new one, not half.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache"}
WALK_LIMIT = 50_000  # entries one listing or search looks at
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ToolError(Exception):
    """A refusal or failure, reported to the model as the observation."""


def resolve(root: Path, given: str) -> Path:
    """The real path of a tool's argument inside the workspace (links inside are followed)."""
    if not isinstance(given, str) or not given.strip() or "\x00" in given:
        raise ToolError("a path is required")
    raw = Path(given.strip())
    if ".." in raw.parts:
        raise ToolError(f"refused: '{given}' uses '..'; paths must stay inside the workspace")
    full = raw if raw.is_absolute() else root / raw
    try:
        real = full.resolve(strict=False)
        exists = real.exists()
    except (RuntimeError, OSError):  # RuntimeError: Python 3.11's "Symlink loop"
        raise ToolError(f"refused: '{given}' is a symlink loop") from None
    if real != root and root not in real.parents:
        why = (
            "leads outside the workspace through a symlink"
            if not raw.is_absolute()
            else "is outside the workspace"
        )
        raise ToolError(f"refused: '{given}' {why}; only files under the workspace can be used")
    if exists and not (real.is_file() or real.is_dir()):
        raise ToolError(f"refused: '{given}' is a device, socket or pipe, not a regular file")
    return real


def parts(rel: str) -> list[str]:
    """The folders and name of a workspace-relative path; refused if it could point elsewhere."""
    names = rel.split("/")
    if not rel or rel.startswith("/") or any(n in ("", ".", "..") for n in names):
        raise ToolError(f"refused: '{rel}' is not a plain path inside the workspace")
    return names


@contextmanager
def _parent(root: Path, rel: str, create: bool = False) -> Iterator[tuple[int, str]]:
    """An open handle on the folder that holds `rel`, reached without following any link."""
    *folders, name = parts(rel)
    fd = os.open(root, _DIR)
    try:
        for i, folder in enumerate(folders):
            try:
                if create and not _exists(fd, folder):
                    os.mkdir(folder, 0o777, dir_fd=fd)
                nxt = os.open(folder, _DIR, dir_fd=fd)
            except FileNotFoundError:
                raise  # callers decide what a missing folder means
            except OSError as exc:
                where = "/".join(folders[: i + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ToolError(
                        f"{where} is a symlink or a file, not a folder (links are never followed)"
                    ) from None
                raise ToolError(f"{where}: {exc.strerror}") from None
            os.close(fd)
            fd = nxt
        yield fd, name
    finally:
        os.close(fd)


def _exists(fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def lstat(root: Path, rel: str) -> os.stat_result | None:
    """The entry itself (a link is not followed), or None when there is none."""
    try:
        with _parent(root, rel) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def readlink(root: Path, rel: str) -> str:
    with _parent(root, rel) as (fd, name):
        return os.readlink(name, dir_fd=fd)


def read(root: Path, rel: str, limit: int) -> tuple[bytes, int]:
    """At most `limit` bytes from the start of a regular file, and the file's size."""
    try:
        with _parent(root, rel) as (fd, name):
            file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        raise ToolError(f"no such file: {rel}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ToolError(f"{rel} is a symlink (links are never followed here)") from None
        raise ToolError(f"{rel}: {exc.strerror}") from None
    with os.fdopen(file, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"refused: '{rel}' is not a regular file")
        return f.read(limit), info.st_size


def write(root: Path, rel: str, data: bytes | None = None, mode: int | None = None, link: str | None = None):
    """Replace `rel` with a new file holding `data` (or a symlink to `link`), creating folders.

    Returns the stat of what was replaced (None if nothing was), so callers can say what a hard
    link kept. A file keeps its mode bits unless `mode` is given."""
    with _parent(root, rel, create=True) as (fd, name):
        try:
            old = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISDIR(old.st_mode):
            raise ToolError(f"{rel} is a folder")
        if mode is None and old is not None and stat.S_ISREG(old.st_mode):
            mode = stat.S_IMODE(old.st_mode)
        tmp = f".qwenlocal-{uuid.uuid4().hex[:12]}.tmp"
        try:
            if link is not None:
                os.symlink(link, tmp, dir_fd=fd)
            else:
                _new_file(fd, tmp, data or b"", mode)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise ToolError(f"could not write {rel}: {exc.strerror}") from None
        return old


def _new_file(fd: int, name: str, data: bytes, mode: int | None) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    file = os.open(name, flags, 0o666, dir_fd=fd)  # the umask applies to new files
    with os.fdopen(file, "wb") as f:
        if mode is not None:
            os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove(root: Path, rel: str) -> bool:
    """Remove a file or a link (the link itself: its target is not touched); False if none."""
    try:
        with _parent(root, rel) as (fd, name):
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ToolError(f"could not remove {rel}: {exc.strerror}") from None
    return True


def walk(
    root: Path, base: Path | None = None, limit: int | None = None
) -> tuple[list[tuple[str, str]], bool]:
    """(relative path, "file" | "link" | "other") for everything under `base` but folders, sorted;
    links to folders are listed, never entered, so a loop cannot trap it. True if cut at `limit`."""
    limit = WALK_LIMIT if limit is None else limit
    found: list[tuple[str, str]] = []
    seen = 0
    stack = [base or root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # an unreadable folder is skipped, as `find` would
        folders = []
        for entry in entries:
            seen += 1
            if seen > limit:
                return sorted(found), True
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIP_DIRS:
                    folders.append(Path(entry.path))
                continue
            kind = (
                "link" if entry.is_symlink() else "file" if entry.is_file(follow_symlinks=False) else "other"
            )
            found.append((Path(entry.path).relative_to(root).as_posix(), kind))
        stack.extend(reversed(folders))
    return sorted(found), False
