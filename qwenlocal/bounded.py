"""Reading input with a limit: files, devices, FIFOs and stdin are never read past `limit + 1`
bytes, so no input (`/dev/zero`, a sparse 4 GiB file, an endless pipe) can take the memory.

A named path must be a regular file: a FIFO would block on open, a device may never end, a
directory cannot be read. It is refused (exit 7) before it is opened for reading: stat first, then
an open that cannot block (O_NONBLOCK) and an fstat of what was opened, so a path swapped between
the two is refused too. Over the limit is `TooLarge`; callers say what the limit is for.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import ExitCode, QwenlocalError

CHUNK = 1 << 20


class TooLarge(Exception):
    """More than the limit: `data` holds the first `limit + 1` bytes."""

    def __init__(self, data: bytes) -> None:
        super().__init__(f"over {len(data) - 1} bytes")
        self.data = data


def read_stream(stream: BinaryIO, limit: int, first: bytes = b"") -> bytes:
    """At most `limit` bytes of `stream` (after `first`, already read from it); TooLarge past it."""
    data = bytearray(first)
    while len(data) <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
    raise TooLarge(bytes(data[: limit + 1]))


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def not_regular(path: Path, kind: str) -> QwenlocalError:
    return QwenlocalError(
        f"{path} is {kind}, not a file",
        hint="give a regular file; to read from a pipe, send it on stdin",
        code=ExitCode.BAD_INPUT,
    )


def unreadable(path: Path, error: OSError) -> QwenlocalError:
    if isinstance(error, FileNotFoundError):
        return QwenlocalError(f"no such file: {path}", code=ExitCode.BAD_INPUT)
    return QwenlocalError(f"cannot read {path}: {error.strerror or error}", code=ExitCode.BAD_INPUT)


def read_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` (TooLarge past it); exit 7 for a missing,
    unreadable or non-regular one."""
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is not None:
            raise not_regular(path, kind)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise unreadable(path, error) from None
    with open(fd, "rb") as f:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise not_regular(path, kind)
        try:
            return read_stream(f, limit)
        except OSError as error:
            raise unreadable(path, error) from None
