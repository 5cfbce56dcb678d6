"""What a loaded model costs in memory, as llama.cpp allocates it, and the largest context that fits.

    memory = weights (the file) + KV cache + recurrent state + compute buffer + runtime overhead

- KV cache: only the full-attention layers have one (1 layer in 4 in Qwen3.5): the catalog's
  `kv_bytes_per_token` at f16, times the cache type's size per value (q8_0: 34 bytes per 32
  values, about half; q4_0: 18 per 32, about a quarter), times n_ctx rounded up to 256 cells.
- Recurrent state: the Gated DeltaNet layers' state, fixed per sequence (`recurrent_bytes`).
- Compute buffer: llama.cpp reserves it for a full batch against the whole context; with flash
  attention (on for the CPU, and always for a quantized cache) it grows by the f16 attention mask,
  2 bytes per cell per batch token (1 KiB per cell at a batch of 512), on top of a base of about
  twice the recurrent state plus 6 KiB per unit of the model's width (measured: 42.2 MiB for
  0.8B, 48.2 MiB for 2B; the formula gives 44.6 and 50.6).
- Runtime overhead: Python, the libraries and llama.cpp's own allocations.

tests/test_memory.py checks the estimate against what llama.cpp reports and the resident memory
measured at 4K, 32K, 128K and 262K for a model with Qwen3.5-0.8B's shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import ModelSpec, QuantFile

MiB = 1024**2
KV_TYPES = ("f16", "q8_0", "q4_0")
_KV_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
RUNTIME_OVERHEAD = 250 * MiB  # Python, its libraries, llama.cpp's model and vocabulary structures
CELL = 256  # llama.cpp rounds a context's size up to a multiple of this
MASK_BYTES = 2  # the f16 attention mask: per context cell and batch token
COMPUTE_PER_EMBD = 6 * 1024  # the compute buffer's base, per unit of the model's width (at batch 512)


def cells(n_ctx: int) -> int:
    return -(-n_ctx // CELL) * CELL


def kv_bytes(model: ModelSpec, n_ctx: int, kv: str = "f16") -> int:
    """The KV cache of the full-attention layers for `n_ctx` tokens, at this cache type."""
    return int(model.kv_bytes_per_token / 2 * _KV_BYTES_PER_VALUE[kv] * cells(n_ctx))


def compute_bytes(model: ModelSpec, n_ctx: int, n_batch: int = 512) -> int:
    """llama.cpp's compute buffer for a batch of `n_batch` tokens against `n_ctx` cells."""
    width = model.embedding or 4096
    base = 2 * model.recurrent_bytes + COMPUTE_PER_EMBD * width * n_batch // 512
    return base + MASK_BYTES * cells(n_ctx) * n_batch


def context_bytes(model: ModelSpec, n_ctx: int, kv: str = "f16") -> int:
    """Everything a context of `n_ctx` tokens adds to the weights."""
    return kv_bytes(model, n_ctx, kv) + model.recurrent_bytes + compute_bytes(model, n_ctx)


def memory_needed(model: ModelSpec, quant: QuantFile, n_ctx: int, kv: str = "f16") -> int:
    return quant.bytes + context_bytes(model, n_ctx, kv) + RUNTIME_OVERHEAD


def largest_context(model: ModelSpec, room: int, kv: str = "f16", step: int = 1024) -> int:
    """The largest context (a multiple of `step`, at most the model's trained length) whose
    context memory fits in `room` bytes; 0 when not even `step` tokens fit."""
    per_cell = kv_bytes(model, CELL, kv) + compute_bytes(model, CELL) - compute_bytes(model, 0)
    fixed = model.recurrent_bytes + compute_bytes(model, 0)
    n = max(room - fixed, 0) * CELL // max(per_cell, 1)
    n = min(n // step * step, model.context_length)
    while n > 0 and context_bytes(model, n, kv) > room:
        n -= step
    return n


@dataclass(frozen=True)
class ContainerMemory:
    """A memory limit of the cgroup this process runs in (a container, a systemd slice)."""

    limit: int  # bytes: the smallest limit on the way from our cgroup to the root
    available: int  # what may still be used under it (its usage less reclaimable page cache)


def container_memory(root: Path = Path("/")) -> ContainerMemory | None:
    """The cgroup memory limit that applies to this process (cgroup v2 or v1), or None when there is
    none. The host's free RAM says nothing of it: a process over its cgroup's limit is killed by the
    OOM killer however much the host has free. `root` is for tests: a tree of fake /proc and /sys."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found: list[ContainerMemory] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: the unified hierarchy
            base, files = root / "sys/fs/cgroup", ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1: the memory controller's own hierarchy
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            base = root / "sys/fs/cgroup/memory"
        else:
            continue
        found += [m for folder in _cgroup_folders(base, path) if (m := _limit_in(folder, *files))]
    return min(found, key=lambda m: m.available, default=None)


def _cgroup_folders(base: Path, path: str) -> list[Path]:
    """Our cgroup's folder and its ancestors' (each one's limit applies). In a container without a
    cgroup namespace the path names the host's folder, which is then mounted as `base` itself."""
    parts = [p for p in path.strip().strip("/").split("/") if p and p != ".."]
    folders = [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()] or ([base] if base.is_dir() else [])


def _limit_in(folder: Path, limit_file: str, usage_file: str, inactive_key: str) -> ContainerMemory | None:
    try:
        text = (folder / limit_file).read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= 1 << 60:  # "max" (v2) or v1's page-rounded 2^63
        return None
    limit = int(text)
    try:
        usage = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        usage = 0
    inactive = 0
    try:
        for stat in (folder / "memory.stat").read_text().splitlines():
            key, _, value = stat.partition(" ")
            if key == inactive_key and value.strip().isdigit():
                inactive = int(value)
    except OSError:
        pass
    return ContainerMemory(limit, max(limit - max(usage - inactive, 0), 0))


def human_tokens(n: int) -> str:
    """262144 -> "256K", 100000 -> "97.7K", 800 -> "800"."""
    if n < 1024:
        return str(n)
    k = n / 1024
    return f"{k:.0f}K" if k == int(k) else f"{k:.1f}K"
