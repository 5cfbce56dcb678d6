"""`qwenlocal doctor`: what was detected, and what would run, with the reason."""

from __future__ import annotations

import json as json_mod

import typer

from ..config import Settings, config_file, data_dir
from .options import Ctx, Json, KvCache, Model, settings, terminal


def doctor(
    context: typer.Context,
    model: Model = None,
    ctx: Ctx = None,
    kv_cache: KvCache = None,
    json: Json = None,
) -> None:
    """Show the hardware qwenlocal detected and the model it picks, with the reason."""
    chosen = settings(model=model, ctx=ctx, kv_cache=kv_cache, json=json)
    data = report(chosen)
    terminal(context).write(json_mod.dumps(data, indent=2) + "\n" if chosen.json else describe(data))


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def report(settings: Settings) -> dict:
    """What was detected and what would run: the data of `doctor --json`."""
    from importlib.metadata import version

    from ..models.hardware import detect
    from ..models.loader import plan

    hw = detect()
    planned = plan(settings, hw)
    choice, label = planned.choice, planned.label
    path = None if planned.missing() else planned.path
    return {
        "contexts": largest_contexts(hw),
        "qwenlocal": version("qwenlocal"),
        "llama_cpp_python": version("llama-cpp-python"),
        "hardware": hw.as_dict(),
        "paths": {"config": str(config_file()), "data": str(data_dir()), "hf_cache": _hf_cache()},
        "pick": choice.as_dict() | {"label": label, "local_path": str(path) if path else None},
    }


def largest_contexts(hw) -> dict[str, dict[str, int]]:
    """The largest context this machine gives each catalog model (at the quantization the pick
    would use for it), with an f16 and a q8_0 KV cache."""
    from ..models.catalog import load
    from ..models.hardware import Want, pick
    from ..models.memory import largest_context

    out = {}
    for spec in load().models.values():
        choice = pick(hw, load(), Want(model=spec))
        room, limit = choice.context_room, spec.context_length
        out[spec.name] = {kv: min(largest_context(spec, room, kv), limit) for kv in ("f16", "q8_0")}
    return out


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def describe(data: dict) -> str:
    hw, pick = data["hardware"], data["pick"]
    gpus = ", ".join(f"{g['name']} ({_size(g['free'])} free of {_size(g['total'])})" for g in hw["gpus"])
    lines = [
        f"qwenlocal {data['qwenlocal']}, llama-cpp-python {data['llama_cpp_python']} "
        f"(GPU offload: {'yes' if hw['gpu_offload'] else 'no, CPU-only build'})",
        f"system:   {hw['system']}, {hw['cpu_threads']} cores used of {hw['logical_cpus']} logical CPUs",
        f"memory:   {_size(hw['available_ram'])} available of {_size(hw['total_ram'])}"
        + (" (unified)" if hw["unified_memory"] else "")
        + (" (container limit)" if hw.get("memory_limit") else ""),
        f"GPU:      {gpus or 'none detected'}",
        *([f"note:     {hw['cpu_kernels_note']}"] if hw.get("cpu_kernels_note") else []),
        f"config:   {data['paths']['config']}",
        f"models:   {data['paths']['hf_cache']} (the Hugging Face cache)",
        "",
        f"pick:     {pick['label']}  ({pick['repo']}/{pick['file']})",
        f"          context {pick['n_ctx']} tokens, {pick['n_threads']} threads, "
        f"GPU layers {pick['n_gpu_layers']}, about {_size(pick['memory_bytes'])} of memory",
        f"why:      {pick['reason']}",
        "status:   "
        + (
            f"downloaded: {pick['local_path']}"
            if pick["local_path"]
            else f"not downloaded: run `qwenlocal pull {pick['label']}`"
        ),
    ]
    if data.get("contexts"):
        lines.append(
            "contexts: the largest this machine's free memory gives each model (f16 / q8_0 KV cache)"
        )
        lines += [f"  - {name}: {c['f16']:,} / {c['q8_0']:,} tokens" for name, c in data["contexts"].items()]
    if pick["considered"]:
        lines.append("also considered:")
        lines += [f"  - {c}" for c in pick["considered"]]
    return "\n".join(lines) + "\n"
