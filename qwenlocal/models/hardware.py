"""What this machine has (`detect`) and which model it should run (`pick`, a pure function).

The pick counts everything a run needs in memory: the weights, the KV cache of the full-attention
layers for the chosen context, the recurrent (Gated DeltaNet) state, llama.cpp's compute buffers
and a safety margin. It also estimates decode speed, which on these dense models is bound by
memory bandwidth (every weight is read once per token), and refuses picks that would crawl.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace

from .catalog import PICK_QUANTS, Catalog, ModelSpec, QuantFile
from .memory import context_bytes, human_tokens, largest_context, memory_needed

GiB = 1024**3
MiB = 1024**2

MIN_TOKENS_PER_S = 8.0  # about reading speed; slower than this a chat feels broken
CPU_GBPS_PER_THREAD = 5.5  # measured: 0.8B Q4_K_M (0.53 GB) decodes at ~21.5 tok/s on 2 threads
CPU_GBPS_MAX = 60.0  # what a desktop's memory channels deliver at best
DEFAULT_GPU_GBPS = 300.0  # when the GPU's bandwidth cannot be read
APPLE_GBPS = 100.0  # M-series base chips: 68-120 GB/s
DEFAULT_CTX = 32768
MIN_CTX = 4096


@dataclass(frozen=True)
class Gpu:
    name: str
    total: int
    free: int
    gbps: float = DEFAULT_GPU_GBPS


@dataclass(frozen=True)
class Hardware:
    total_ram: int
    available_ram: int
    cpu_threads: int  # threads llama.cpp should use: physical cores available to us
    logical_cpus: int
    gpus: tuple[Gpu, ...] = ()
    gpu_offload: bool = False  # whether this llama.cpp build can offload to a GPU
    unified_memory: bool = False  # Apple silicon: the GPU shares the RAM
    system: str = ""
    cpu_kernels_note: str | None = None  # e.g. why llama.cpp's AMX kernels are off (engine/amx.py)
    memory_limit: int | None = None  # a container's (cgroup's) limit, when it is below the RAM

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Want:
    """What the user fixed; None leaves the choice to `pick`."""

    model: ModelSpec | None = None
    quant: str | None = None
    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    image_tokens: int | None = None  # a vision projector is loaded too, for images of this budget
    kv_cache: str | None = None  # None: f16, or q8_0 when only that makes the asked context fit


@dataclass(frozen=True)
class Choice:
    model: ModelSpec
    quant: QuantFile
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    memory_bytes: int
    tokens_per_s: float
    fits: bool
    reason: str
    considered: tuple[str, ...] = field(default=())
    kv_cache: str = "f16"
    max_ctx: int = 0  # the largest context this machine gives this model, at this KV cache type
    context_room: int = 0  # bytes of memory left for the context beside the weights (memory.py)

    def as_dict(self) -> dict:
        return {
            "model": self.model.name,
            "quant": self.quant.quant,
            "repo": self.quant.repo,
            "file": self.quant.file,
            "file_bytes": self.quant.bytes,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_threads": self.n_threads,
            "memory_bytes": self.memory_bytes,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "fits": self.fits,
            "reason": self.reason,
            "considered": list(self.considered),
            "kv_cache": self.kv_cache,
            "max_ctx": self.max_ctx,
        }


# -- detection --------------------------------------------------------------------------------


def _nvidia_gpus() -> tuple[Gpu, ...]:
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver or no GPU: NVML raises its own error types
        return ()
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            try:  # bus width (bits) x memory clock (MHz) x 2 (double data rate)
                width = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
                clock = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
                gbps = width / 8 * clock * 2 / 1000 or DEFAULT_GPU_GBPS
            except Exception:
                gbps = DEFAULT_GPU_GBPS
            gpus.append(Gpu(name if isinstance(name, str) else name.decode(), mem.total, mem.free, gbps))
    finally:
        pynvml.nvmlShutdown()
    return tuple(gpus)


def _usable_threads() -> tuple[int, int]:
    import psutil

    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    physical = psutil.cpu_count(logical=False) or logical
    # llama.cpp decodes fastest on physical cores; never more than we may run on
    return max(1, min(physical, logical)), logical or 1


def detect(gpu_offload: bool | None = None) -> Hardware:
    """Probe this machine. `gpu_offload=None` asks the installed llama.cpp build."""
    import psutil

    from .memory import container_memory

    vm = psutil.virtual_memory()
    total, available = vm.total, vm.available
    container = container_memory()
    if container is not None and container.limit < total:  # what this process may really use
        total, available = container.limit, min(available, container.available)
    threads, logical = _usable_threads()
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    note = None
    if gpu_offload is None:
        from ..engine import amx_kernels_off, gpu_offload_supported

        gpu_offload, note = gpu_offload_supported(), amx_kernels_off()
    gpus = _nvidia_gpus()
    if apple:  # Metal may use about three quarters of unified memory
        gpus = (
            Gpu("Apple GPU (unified memory)", int(vm.total * 0.75), int(vm.available * 0.75), APPLE_GBPS),
        )
    return Hardware(
        total_ram=total,
        available_ram=available,
        cpu_threads=threads,
        logical_cpus=logical,
        gpus=gpus,
        gpu_offload=gpu_offload,
        unified_memory=apple,
        system=f"{platform.system()} {platform.machine()}",
        cpu_kernels_note=note,
        memory_limit=total if total < vm.total else None,
    )


# -- the pick ---------------------------------------------------------------------------------


# The most tokens one image becomes, unless --image-tokens says otherwise. On a CPU, encoding
# costs grow faster than linearly with tokens (attention over 4 patches per token): 256 tokens
# (about 512x512 pixels) keep text in photos and screenshots readable for less than a quarter of
# the encoder's work at 1024; a GPU takes Qwen's own 1024.
IMAGE_TOKENS_CPU = 256
IMAGE_TOKENS_GPU = 1024


def image_tokens_for(n_gpu_layers: int) -> int:
    return IMAGE_TOKENS_GPU if n_gpu_layers != 0 else IMAGE_TOKENS_CPU


def vision_bytes(model: ModelSpec, image_tokens: int | None) -> int:
    """The projector's weights and its encoder's compute buffer for one image, when loaded."""
    if not image_tokens or model.projector is None:
        return 0
    return model.projector.bytes + model.vision_bytes_per_token * image_tokens


def margin(hw: Hardware) -> int:
    """Memory to leave free for everything else: 10% of what is available, 256 MiB to 1 GiB."""
    return int(min(max(hw.available_ram * 0.10, 256 * MiB), GiB))


def cpu_gbps(hw: Hardware) -> float:
    """Decode bandwidth on the CPU. Per thread it is ~5.5 GB/s (measured on 2 threads); past that
    the memory channels saturate (~3.2 GB/s per extra thread seen on 8-10 thread desktops)."""
    t = hw.cpu_threads
    return min(CPU_GBPS_PER_THREAD * t, 11.0 + 3.2 * max(t - 2, 0), CPU_GBPS_MAX)


@dataclass(frozen=True)
class _Plan:
    quant: QuantFile
    n_ctx: int
    n_gpu_layers: int  # -1: all
    memory: int
    tokens_per_s: float
    fits: bool
    where: str
    room: int = 0  # memory left for the context where it lives: what sets the largest context


def _plan(hw: Hardware, model: ModelSpec, quant: QuantFile, n_ctx: int, want: Want) -> _Plan:
    """Where the model would live with this context, and how fast it would decode."""
    ram_budget = hw.available_ram - margin(hw)
    kv = want.kv_cache or "f16"
    need = memory_needed(model, quant, n_ctx, kv) + vision_bytes(model, want.image_tokens)
    ctx_bytes = context_bytes(model, n_ctx, kv)
    cpu_speed = cpu_gbps(hw) * 1e9 / quant.bytes
    if hw.unified_memory and hw.gpu_offload and hw.gpus:  # Metal: the GPU's working set is the limit
        metal = hw.gpus[0]
        budget = min(ram_budget, metal.free)
        room = budget - need + ctx_bytes
        return _Plan(
            quant, n_ctx, -1, need, metal.gbps * 1e9 / quant.bytes, need <= budget, "GPU (Metal)", room
        )
    gpu = max(hw.gpus, key=lambda g: g.free, default=None) if hw.gpu_offload else None
    if gpu is None or want.n_gpu_layers == 0:
        room = ram_budget - need + ctx_bytes
        return _Plan(quant, n_ctx, 0, need, cpu_speed, need <= ram_budget, "CPU", room)
    vram_budget = gpu.free - 512 * MiB
    if want.n_gpu_layers is None and need <= vram_budget:
        speed, room = gpu.gbps * 1e9 / quant.bytes, vram_budget - need + ctx_bytes
        return _Plan(quant, n_ctx, -1, need, speed, True, f"GPU ({gpu.name})", room)
    # partial offload: whole layers to the GPU, the rest (and the context) in RAM
    layers = model.layers + 1  # llama.cpp counts the output layer too
    per_layer = quant.bytes / layers
    n_gpu = want.n_gpu_layers
    if n_gpu is None:
        n_gpu = max(0, min(layers, int((vram_budget - ctx_bytes) // per_layer)))
    n_gpu = layers if n_gpu < 0 else min(n_gpu, layers)
    on_gpu = per_layer * n_gpu
    seconds = (quant.bytes - on_gpu) / (cpu_gbps(hw) * 1e9) + on_gpu / (gpu.gbps * 1e9)
    where = f"CPU with {n_gpu}/{layers} layers on the {gpu.name}" if n_gpu else "CPU"
    memory, room = int(need - on_gpu), int(ram_budget - need + on_gpu + ctx_bytes)
    return _Plan(quant, n_ctx, n_gpu, memory, 1 / seconds, memory <= ram_budget, where, room)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _choice(hw: Hardware, model: ModelSpec, plan: _Plan, why: str, considered, kv: str = "f16") -> Choice:
    quant = plan.quant
    largest = largest_context(model, plan.room, kv)
    cache = "" if kv == "f16" else f" ({kv} KV cache)"
    reason = (
        f"{model.display} {quant.quant}: {_gb(quant.bytes)} of weights + "
        f"{_gb(context_bytes(model, plan.n_ctx, kv))} for a {human_tokens(plan.n_ctx)} context{cache}, "
        f"on the {plan.where}; about {plan.tokens_per_s:.0f} tokens/s expected. {why} "
        + (f"Contexts up to {human_tokens(largest)} tokens fit in this machine's memory." if largest else "")
    )
    return Choice(
        model,
        quant,
        plan.n_ctx,
        plan.n_gpu_layers,
        hw.cpu_threads,
        plan.memory,
        plan.tokens_per_s,
        plan.fits,
        reason.strip(),
        tuple(considered),
        kv,
        largest,
        max(plan.room, 0),
    )


def _contexts(want: Want) -> list[int]:
    return [want.n_ctx] if want.n_ctx else [DEFAULT_CTX, 16384, 8192, MIN_CTX]


def _best(plans: list[_Plan]) -> _Plan | None:
    """Best quality among fitting, fast-enough plans; running wholly on the GPU comes first."""
    good = [p for p in plans if p.fits and p.tokens_per_s >= MIN_TOKENS_PER_S]
    whole = [p for p in good if p.n_gpu_layers == -1]
    return (whole or good or [None])[0]


def pick(hw: Hardware, catalog: Catalog, want: Want = Want()) -> Choice:
    """The largest model, then the largest context (down to 4K), then the best quantization, that
    fit in memory and decode at a usable speed. Pure: the same inputs give the same choice.

    The KV cache is f16 unless asked otherwise (`want.kv_cache`), with one exception: when a
    context was asked for (`want.n_ctx`) and does not fit with an f16 cache but does with q8_0
    (half the memory, a small loss of accuracy), the pick takes q8_0 and says so."""
    choice = _pick(hw, catalog, want)
    if choice.fits or want.kv_cache is not None or want.n_ctx is None:
        return choice
    halved = _pick(hw, catalog, replace(want, kv_cache="q8_0"))
    if not halved.fits:
        return choice
    why = (
        f"KV cache q8_0 chosen: with an f16 cache a {human_tokens(want.n_ctx)} context does not fit "
        f"({_gb(choice.memory_bytes)} needed)."
    )
    return replace(halved, reason=f"{halved.reason} {why}")


def _pick(hw: Hardware, catalog: Catalog, want: Want) -> Choice:
    kv = want.kv_cache or "f16"
    budget = max(hw.available_ram - margin(hw), 0)
    if want.model is not None and want.quant is not None:
        quant = want.model.quant(want.quant)
        plans = [_plan(hw, want.model, quant, c, want) for c in _contexts(want)]
        plan = next((p for p in plans if p.fits), plans[-1])
        why = (
            "You chose this model and quantization."
            if plan.fits
            else (
                f"It needs {_gb(plan.memory)} but only {_gb(budget)} is free: "
                "expect swapping or a failed load."
            )
        )
        return _choice(hw, want.model, plan, why, [], kv)
    models = [want.model] if want.model else sorted(catalog.models.values(), key=lambda m: -m.params_b)
    considered: list[str] = []
    fitting: list[tuple[ModelSpec, _Plan]] = []
    for model in models:
        quants = [model.quants[q] for q in PICK_QUANTS if q in model.quants]
        for n_ctx in _contexts(want):
            plans = [_plan(hw, model, q, n_ctx, want) for q in quants]
            fitting += [(model, p) for p in plans if p.fits]
            best = _best(plans)
            if best is not None:
                why = "The largest model that fits and runs at a usable speed."
                if want.model:
                    why = "The best quantization of the model you chose that fits and runs at a usable speed."
                elif considered:
                    why += " Passed over: " + "; ".join(considered) + "."
                return _choice(hw, model, best, why, considered, kv)
        smallest = _plan(hw, model, quants[-1], _contexts(want)[-1], want)
        considered.append(
            f"{model.display} needs {_gb(smallest.memory)} at least, {_gb(budget)} free"
            if not smallest.fits
            else f"{model.display} fits, but about {smallest.tokens_per_s:.1f} tokens/s here"
        )
    if fitting:  # nothing is fast enough: the fastest that fits
        model, plan = max(fitting, key=lambda mp: mp[1].tokens_per_s)
        what = "No quantization of this model" if want.model else "Nothing"
        why = (
            f"{what} reaches {MIN_TOKENS_PER_S:.0f} tokens/s on this machine; this is the fastest that fits."
        )
        return _choice(hw, model, plan, why, considered, kv)
    model = models[-1]
    plan = _plan(hw, model, model.quants[PICK_QUANTS[-1]], _contexts(want)[-1], want)
    why = f"Nothing fits: it needs {_gb(plan.memory)} and only {_gb(budget)} is free."
    return _choice(hw, model, plan, why, considered, kv)
