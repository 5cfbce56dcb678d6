"""Model states kept on disk between processes: a new process restores the longest stored prefix of
its prompt and evaluates only the rest (the agent's system prompt and tools, a file piped to `run`
again, a resumed chat).

A state is sequence 0's whole state (`llama_state_seq_get_data_ext`, flags 0: the KV cells and the
Gated DeltaNet recurrent state) after exactly the tokens of a prefix. It is kept in one file whose
name says which model setup it belongs to (a hash of the identity: the model file's path, size and
mtime, llama-cpp-python's version, the KV cache type, the projector) and the prefix (its length
and the sha256 of its token ids; an image run's ids are derived from the image's sha256). The
file's header repeats all of it, so a file that was renamed, cut short or written by another
version is recognised, skipped and removed, never restored (a notice says so under QWENLOCAL_DEBUG).

Files are written to a temporary name and renamed (a reader sees a whole file or none), `0600` in a
`0700` folder: a state encodes the text it came from. Writing happens in a thread after the state
is copied out, so answering does not wait for the disk. The folder is kept under its cap by
removing the least recently used files (a restore touches its file), under a lock. A full disk or
an unwritable folder turns the store off with one notice; nothing else about it is ever an error.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import json
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"QWENLOCAL-STATE\x01"
SUFFIX = ".state"
MAX_HEADER = 1 << 16  # bytes: a header is a few hundred (a damaged length is not read)
# Restoring costs a file read and a copy whatever the length (the recurrent state alone is ~20 MiB
# on 0.8B/2B): 7-15 ms on 0.8B's shape, against 95 ms to read 16 tokens and 217 ms to read 64
# (BENCHMARKS.md, "Restoring against reading a prefix"). From a cold disk it takes under a tenth of
# reading from 64 tokens on; shorter prefixes are not worth a ~20 MiB file.
MIN_TOKENS = 64


def _digest(tokens: list[int] | tuple[int, ...]) -> str:
    return hashlib.sha256(array.array("q", tokens).tobytes()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One stored state, as its file name and header describe it."""

    path: Path
    n_tokens: int
    bytes: int
    used: float  # the file's mtime: when it was written or last restored


class DiskStates:
    """The store for one model setup (`identity`), in `folder`, at most `limit` bytes in all."""

    def __init__(self, folder: Path, identity: dict, limit: int, min_tokens: int = MIN_TOKENS) -> None:
        self.folder, self.limit, self.min_tokens = Path(folder), limit, min_tokens
        self.identity = json.dumps(identity, sort_keys=True)
        self.model = str(identity.get("model", ""))
        self.key = hashlib.sha256(self.identity.encode()).hexdigest()[:16]
        self.notices: list[str] = []  # why the store stopped writing; with QWENLOCAL_DEBUG, what it removed
        self.broken = False
        self._writers: list[threading.Thread] = []

    # -- finding and restoring ------------------------------------------------------------

    def _stored(self) -> list[tuple[int, str, Path]]:
        """(n_tokens, prefix digest, path) of this setup's files, longest first."""
        found = []
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        for name in names:
            parts = name.removesuffix(SUFFIX).split("-")
            if name.endswith(SUFFIX) and len(parts) == 3 and parts[0] == self.key and parts[1].isdigit():
                found.append((int(parts[1]), parts[2], self.folder / name))
        return sorted(found, reverse=True)

    def longest(self, tokens: list[int], above: int = 0) -> tuple[int, Path] | None:
        """The longest stored prefix of `tokens` longer than `above` (one token at least left to
        evaluate), by its file name; its content is checked when it is restored."""
        for n, digest, path in self._stored():
            if above < n < len(tokens) and _digest(tokens[:n]).startswith(digest):
                return n, path
        return None

    def read(self, path: Path, tokens: list[int], n: int) -> bytearray | None:
        """The state stored for `tokens[:n]`, or None (a bad file is removed)."""
        try:
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise ValueError("not a state file")
                size = int.from_bytes(f.read(4), "little")
                header = json.loads(f.read(size)) if size <= MAX_HEADER else None
                if not isinstance(header, dict):
                    raise ValueError("not a state file's header")
                data = bytearray(max(os.fstat(f.fileno()).st_size - f.tell(), 0))
                if f.readinto(data) != len(data):
                    raise ValueError("cut short while reading")
        except (OSError, ValueError) as error:
            self._discard(path, f"unreadable ({error})")
            return None
        expected = {
            "identity": self.identity,
            "n_tokens": n,
            "tokens": _digest(tokens[:n]),
            "bytes": len(data),
            "crc32": zlib.crc32(data),
        }
        if any(header.get(k) != v for k, v in expected.items()):
            self._discard(path, "written for another model, version or prefix, or cut short")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def _discard(self, path: Path, why: str) -> None:
        from ..config import debug

        if debug():  # shown as a notice with the answer, as a failed write is
            self.notices.append(f"note: state cache: removed {path.name}: {why}")
        with contextlib.suppress(OSError):
            path.unlink()

    # -- saving ---------------------------------------------------------------------------

    def _wanted(self, tokens: list[int] | tuple[int, ...]) -> tuple[Path, str] | None:
        """Where a state after `tokens` goes and the prefix's digest, when it is worth a file (long
        enough, not stored yet: a stored one is touched instead)."""
        if self.broken or len(tokens) < self.min_tokens or self.limit <= 0:
            return None
        digest = _digest(tokens)
        path = self.folder / f"{self.key}-{len(tokens)}-{digest[:32]}{SUFFIX}"
        if path.exists():
            with contextlib.suppress(OSError):
                os.utime(path)
            return None
        return path, digest

    def save(self, tokens: list[int] | tuple[int, ...], data) -> None:
        """Write the state after `tokens`, in a thread of its own, when it is worth a file. `data`:
        the state (bytes or a ctypes array, copied already), or a function that copies it out
        (called only then; None from it: nothing to write)."""
        wanted = self._wanted(tokens)
        data = data() if wanted is not None and callable(data) else data
        if wanted is None or data is None:
            return
        path, digest = wanted
        header = {
            "identity": self.identity,
            "n_tokens": len(tokens),
            "tokens": digest,
            "bytes": len(data),
            "crc32": zlib.crc32(data),
            "model": self.model,
            "saved": time.time(),
        }
        writer = threading.Thread(target=self._write, args=(path, header, data), daemon=True)
        self._writers = [w for w in self._writers if w.is_alive()] + [writer]
        writer.start()

    def _write(self, path: Path, header: dict, data) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            encoded = json.dumps(header).encode()
            temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with open(fd, "wb") as f:
                    f.write(MAGIC + len(encoded).to_bytes(4, "little") + encoded)
                    f.write(memoryview(data).cast("B"))
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            self.evict()
        except OSError as error:  # a full disk, a folder that cannot be written
            self.broken = True
            self.notices.append(
                f"note: prompt states are not being saved to {self.folder} "
                f"({error.strerror or error}); prompts are read in full as before"
            )

    def take_notices(self) -> list[str]:
        taken, self.notices = self.notices, []
        return taken

    def flush(self) -> None:
        """Wait for the writes in flight (a process about to exit keeps what it wrote)."""
        for writer in self._writers:
            writer.join()
        self._writers = []

    # -- the cap --------------------------------------------------------------------------

    def evict(self) -> None:
        """Remove the least recently used files of every setup until the folder is under its cap,
        and temporary files left by processes that died while writing."""
        with locked(self.folder):
            entries = entries_in(self.folder)
            total = sum(e.bytes for e in entries)
            for entry in sorted(entries, key=lambda e: e.used):
                if total <= self.limit:
                    break
                with contextlib.suppress(OSError):
                    entry.path.unlink()
                total -= entry.bytes
            for temp in self.folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    if time.time() - temp.stat().st_mtime > 3600:
                        temp.unlink()


@contextlib.contextmanager
def locked(folder: Path):
    """An exclusive lock on the folder (between processes) while it is pruned."""
    import fcntl

    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def entries_in(folder: Path) -> list[Entry]:
    """Every stored state in `folder`, of any model setup, from its name and its file's stat."""
    found = []
    try:
        paths = [p for p in Path(folder).iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")]
    except OSError:
        return []
    for path in paths:
        try:
            info = path.stat()
            n = int(path.name.split("-")[1])
        except (OSError, ValueError, IndexError):
            continue
        found.append(Entry(path, n, info.st_size, info.st_mtime))
    return found


def model_of(path: Path) -> str:
    """The name of the model a stored state belongs to (its header says), or ""."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return ""
            size = int.from_bytes(f.read(4), "little")
            header = json.loads(f.read(size)) if size <= MAX_HEADER else {}
            return str(header.get("model", "")) if isinstance(header, dict) else ""
    except (OSError, ValueError):
        return ""


def state_of(lib, ctx) -> ctypes.Array | None:
    """Sequence 0's whole state (KV cells and recurrent state), copied out of the context."""
    size = lib.llama_state_seq_get_size_ext(ctx, 0, 0)
    data = (ctypes.c_uint8 * size)()
    return data if lib.llama_state_seq_get_data_ext(ctx, data, size, 0, 0) == size else None
