"""Restoring against reading, prefix by prefix (part of `--only warm`): where does a state file on
disk become cheaper than evaluating its tokens again? engine/diskstate.MIN_TOKENS keeps no file
for a shorter prefix; this is the measurement behind that number.

In one process on one engine, for each prefix length: read it from an empty context (llama_decode,
as a prompt is read); keep its state (the copy the answering path makes, `StateCache.persist`; the
file is written in a thread, as in use); then, from an empty context again, restore it through
`StateCache.reuse` (finding the file, reading and checking it, setting the state), first with the
file in the page cache (as soon after it was written), then, where the page cache can be dropped
for it (fsync, posix_fadvise DONTNEED, checked with mincore), from the disk itself.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

from qwenlocal.engine import LlamaEngine, LoadOptions
from qwenlocal.engine.diskstate import MIN_TOKENS

from . import agent, llama_bench

HEADING = "Restoring against reading a prefix"
SIZES = (16, 32, 64, 128, 256, 512, 1024)


def scratch() -> Path:
    """A work folder on the disk the user's cache is on (not a tmpfs: the disk is measured)."""
    folder = llama_bench.cache_dir() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resident(path: Path) -> float:
    """The share of the file's pages in the page cache (mincore on a private mapping of it)."""
    size = path.stat().st_size
    page = mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        view = (ctypes.c_char * size).from_buffer(mapped)
        pages = (size + page - 1) // page
        vector = (ctypes.c_ubyte * pages)()
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vector)
        del view
    return sum(v & 1 for v in vector) / pages if rc == 0 else 1.0


def drop_cached(path: Path) -> bool:
    """Drop the file's pages from the page cache; whether that worked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident(path) < 0.05


def _timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def prefix(engine: LlamaEngine, tokens: list[int], reps: int) -> dict:
    """One prefix length's samples: reading, keeping, restoring (page cache, disk), file size."""
    cache, n = engine.cache, len(tokens) - 1
    row = {"tokens": n, "read": [], "keep": [], "restore": [], "disk": [], "bytes": 0}
    for _ in range(reps):
        for old in cache.disk.folder.glob("*.state"):
            old.unlink()  # each sample keeps its own file
        cache.reset()
        row["read"].append(_timed(lambda: engine.model.eval(tokens[:n]))[0])
        row["keep"].append(_timed(cache.persist)[0])
        cache.disk.flush()
        (file,) = cache.disk.folder.glob("*.state")
        row["bytes"] = file.stat().st_size
        for key in ("restore", "disk"):
            if key == "disk" and not drop_cached(file):
                continue
            cache.reset()
            seconds, got = _timed(lambda: cache.reuse(tokens))
            assert got == n == cache.restored, (got, n, cache.restored)
            row[key].append(seconds)
    return row


def measure(path: Path, threads: int, folder: Path, reps: int, sizes=SIZES) -> list[dict]:
    options = LoadOptions(n_ctx=4096, n_threads=threads, state_dir=str(folder), state_max=1 << 34)
    with LlamaEngine(path, options) as engine:
        engine.cache.disk.min_tokens = 1  # below the store's own threshold: that is what is measured
        count = lambda text: len(engine.tokenize(text))  # noqa: E731
        tokens = engine.tokenize(agent.module_text(0, max(sizes) + 64, count))
        engine.cache.reset()
        engine.model.eval(tokens[:64])  # llama.cpp's first evaluation sets itself up: not timed
        return [prefix(engine, tokens[: n + 1], reps) for n in sizes]


def crossing(rows: list[dict], share: float) -> int | None:
    """The shortest prefix from which on restoring (page cache) takes at most `share` of reading."""
    good = [r["tokens"] for r in rows if min(r["restore"]) <= share * min(r["read"])]
    worse = [r["tokens"] for r in rows if min(r["restore"]) > share * min(r["read"])]
    return next((n for n in sorted(good) if all(w < n for w in worse)), None)


def section(name: str, rows: list[dict]) -> list[str]:
    best = lambda values: f"{min(values) * 1000:.1f} ms" if values else "n/a"  # noqa: E731
    lines = [
        f"{HEADING} ({name}, one process, best of {len(rows[0]['read'])}): reading the prefix from an empty context, "
        "keeping its state (the copy made while answering; the file is written in a thread), restoring it from its "
        "file through `StateCache.reuse`, from the page cache and, with the file dropped from it, from the disk:",
        "",
        "| prefix tokens | state file | reading it | keeping it | restoring it (page cache) | restoring it (disk) "
        "| restoring / reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = min(r["restore"]) / min(r["read"])
        lines.append(f"| {r['tokens']:,} | {r['bytes'] / 2**20:.1f} MiB | {best(r['read'])} | {best(r['keep'])} | "
                     f"{best(r['restore'])} | {best(r['disk'])} | {ratio:.3f} |")  # fmt: skip
    cheaper, tenth = crossing(rows, 1.0), crossing(rows, 0.1)
    say = lambda n: f"from {n:,} tokens on" if n else "at none of these lengths"  # noqa: E731
    return lines + [
        "",
        f"- Restoring is cheaper than reading {say(cheaper)}, and takes at most a tenth of reading {say(tenth)} "
        f"(page cache); engine/diskstate.py keeps no file under MIN_TOKENS = {MIN_TOKENS} tokens.",
    ]
