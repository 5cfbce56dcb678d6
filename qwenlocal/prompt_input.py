"""The user's message for `run`: the prompt argument and piped stdin, combined.

stdin is the material and the argument the instruction (`git diff | qwenlocal run "write a
commit message"`). A stdin that stays open without data never hangs the program: after
`stdin_timeout` seconds with no first byte it is left alone, and the user is told.
"""

from __future__ import annotations

import io
import os
import select
from dataclasses import dataclass
from typing import BinaryIO

from .bounded import TooLarge, read_stream
from .errors import ExitCode, QwenlocalError

MAX_STDIN = 64 << 20  # bytes: far more text than the largest context holds, and the image limit


@dataclass(frozen=True)
class StdinRead:
    text: str | None  # None: a terminal, or nothing arrived in time, or an image
    timed_out: bool = False
    image: bytes | None = None  # the bytes of an image (by its magic bytes), checked later


def _material(stream: BinaryIO) -> StdinRead:
    """What stdin holds, read to its end but never past MAX_STDIN (an endless pipe, /dev/zero)."""
    from .images import is_image, too_large

    try:
        data = read_stream(stream, MAX_STDIN)
    except TooLarge as over:
        if is_image(over.data):
            raise too_large("stdin") from None
        if b"\x00" in over.data[:65536]:
            decode(over.data)  # binary data is said to be binary, whatever its size
        raise QwenlocalError(
            f"stdin is over {MAX_STDIN >> 20} MiB: more text than any context holds "
            "(Qwen3.5 reads at most 262,144 tokens, about 1 MiB of text)",
            hint="pipe in only the part the question is about (e.g. `head -c 500000 file`)",
            code=ExitCode.CONTEXT_OVERFLOW,
        ) from None
    return StdinRead(None, image=data) if is_image(data) else StdinRead(decode(data))


def read_stdin(timeout: float, stream: BinaryIO | None) -> StdinRead:
    """The terminal's stdin (its binary buffer), read whole unless it is a TTY or stays silent."""
    if stream is None or stream.closed:
        return StdinRead(None)
    try:
        fd = stream.fileno()
    except io.UnsupportedOperation:  # in memory (a test's terminal): it cannot keep us waiting
        return _material(stream)
    except (OSError, ValueError):
        return StdinRead(None)
    try:
        if os.isatty(fd):
            return StdinRead(None)
        ready, _, _ = select.select([stream], [], [], timeout)
    except (OSError, ValueError):  # no usable file descriptor
        return StdinRead(None)
    if not ready:
        return StdinRead(None, timed_out=True)
    return _material(stream)


def decode(data: bytes) -> str:
    if b"\x00" in data[:65536]:
        raise QwenlocalError(
            "stdin looks like binary data, not text",
            hint="pipe text files only (for example the output of `git diff` or `cat notes.txt`)",
            code=ExitCode.BAD_INPUT,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QwenlocalError(
            f"stdin is not valid UTF-8 (byte {exc.start})",
            hint="convert it first, e.g. `iconv -f latin1 -t utf-8 file | qwenlocal run ...`",
            code=ExitCode.BAD_INPUT,
        ) from None


def compose(prompt: str | None, material: str | None) -> str:
    """One user message: the material first, then the instruction."""
    parts = [p.strip("\n") for p in (material, prompt) if p is not None and p.strip()]
    if not parts:
        raise QwenlocalError(
            "no prompt given" if material is None else "the prompt and stdin are both empty",
            hint='qwenlocal run "your question", or pipe text in: cat notes.txt | qwenlocal run "summarize"',
            code=ExitCode.BAD_INPUT,
        )
    return "\n\n".join(parts)
