"""The pick, table-driven over machines from 2 GiB to 128 GiB, with and without GPUs."""

from __future__ import annotations

import pytest

from qwenlocal.models.catalog import load
from qwenlocal.models.hardware import MIN_TOKENS_PER_S, GiB, Gpu, Hardware, Want, detect, pick

CAT = load()


def machine(ram_gib, avail_gib=None, threads=4, gpus=(), offload=False, apple=False) -> Hardware:
    return Hardware(
        total_ram=int(ram_gib * GiB),
        available_ram=int((avail_gib if avail_gib is not None else ram_gib * 0.8) * GiB),
        cpu_threads=threads,
        logical_cpus=threads * 2,
        gpus=tuple(gpus),
        gpu_offload=offload,
        unified_memory=apple,
        system="test",
    )


def rtx(vram_gib, free=None, gbps=450.0):
    return Gpu(
        "RTX test", int(vram_gib * GiB), int((free if free is not None else vram_gib - 0.3) * GiB), gbps
    )


CASES = [
    # (name, machine, expected model, expected quant or None, GPU layers: "all" / "none" / "some")
    ("2 GiB netbook", machine(2, 1.4, threads=2), "qwen3.5-0.8b", None, "none"),
    ("4 GiB, 2 cores", machine(4, 3, threads=2), "qwen3.5-2b", "Q4_K_M", "none"),
    ("8 GiB laptop, 4 cores", machine(8, 6, threads=4), "qwen3.5-2b", None, "none"),
    ("16 GiB, 8 cores", machine(16, 12, threads=8), "qwen3.5-4b", None, "none"),
    ("32 GiB, 16 cores", machine(32, 28, threads=16), "qwen3.5-9b", None, "none"),
    ("128 GiB, 2 cores: fits, but too slow for 9B", machine(128, 120, threads=2), "qwen3.5-2b", None, "none"),
    ("128 GiB, 32 cores", machine(128, 120, threads=32), "qwen3.5-9b", None, "none"),
    ("16 GiB with only 1.5 GiB free", machine(16, 1.5, threads=8), "qwen3.5-0.8b", None, "none"),
    ("8 GiB + RTX 12 GiB", machine(8, 6, gpus=[rtx(12)], offload=True), "qwen3.5-9b", "Q8_0", "all"),
    ("16 GiB + RTX 8 GiB", machine(16, 12, gpus=[rtx(8)], offload=True), "qwen3.5-9b", None, "all"),
    ("16 GiB + RTX 4 GiB, 4 cores", machine(16, 12, gpus=[rtx(4)], offload=True), "qwen3.5-4b", None, "some"),
    (
        "GPU present but CPU-only llama.cpp build",
        machine(16, 12, threads=4, gpus=[rtx(24)], offload=False),
        "qwen3.5-2b",
        None,
        "none",
    ),
    (
        "RTX 24 GiB busy (1 GiB free)",
        machine(32, 28, threads=4, gpus=[rtx(24, free=1)], offload=True),
        "qwen3.5-2b",
        None,
        "some",
    ),
    (
        "Apple M-series 16 GiB",
        machine(16, 12, threads=8, gpus=[Gpu("Apple", 12 * GiB, 9 * GiB, 100)], offload=True, apple=True),
        "qwen3.5-9b",
        None,
        "all",
    ),
    (
        "Apple M-series 8 GiB",
        machine(8, 5, threads=8, gpus=[Gpu("Apple", 6 * GiB, 3.75 * GiB, 100)], offload=True, apple=True),
        "qwen3.5-4b",
        None,
        "all",
    ),
]


@pytest.mark.parametrize("name, hw, model, quant, gpu", CASES, ids=[c[0] for c in CASES])
def test_pick(name, hw, model, quant, gpu):
    choice = pick(hw, CAT)
    assert choice.model.name == model, choice.reason
    if quant:
        assert choice.quant.quant == quant, choice.reason
    assert choice.fits
    assert {
        "all": choice.n_gpu_layers == -1,
        "none": choice.n_gpu_layers == 0,
        "some": choice.n_gpu_layers >= 0,
    }[gpu], (choice.n_gpu_layers, choice.reason)
    if gpu == "some" and hw.gpus[0].free > 2 * GiB:
        assert 0 < choice.n_gpu_layers < choice.model.layers + 1
    assert choice.model.display in choice.reason and "tokens/s" in choice.reason
    assert choice.n_ctx >= 4096
    # what it needs fits in what is free (minus a margin)
    if choice.n_gpu_layers == 0:
        assert choice.memory_bytes < hw.available_ram


def test_the_reason_says_why_bigger_models_were_passed_over():
    choice = pick(machine(128, 120, threads=2), CAT)
    assert "Passed over" in choice.reason and "Qwen3.5-9B" in choice.reason
    assert choice.tokens_per_s >= MIN_TOKENS_PER_S


def test_context_shrinks_before_the_model_does():
    roomy = pick(machine(16, 12, threads=2), CAT, Want(model=CAT.models["qwen3.5-0.8b"]))
    tight = pick(machine(2, 1.4, threads=2), CAT, Want(model=CAT.models["qwen3.5-0.8b"]))
    assert roomy.n_ctx == 32768 and tight.n_ctx < roomy.n_ctx


def test_nothing_fits():
    choice = pick(machine(1, 0.4), CAT)
    assert not choice.fits and "Nothing fits" in choice.reason


def test_a_fixed_model_and_quant_is_honoured_even_if_too_big():
    spec = CAT.models["qwen3.5-9b"]
    choice = pick(machine(4, 3), CAT, Want(model=spec, quant="Q8_0"))
    assert choice.model is spec and choice.quant.quant == "Q8_0" and not choice.fits
    assert "free" in choice.reason


def test_user_context_and_gpu_layers_are_honoured():
    choice = pick(machine(16, 12, gpus=[rtx(8)], offload=True), CAT, Want(n_ctx=8192, n_gpu_layers=10))
    assert choice.n_ctx == 8192 and choice.n_gpu_layers == 10


def test_detect_reads_this_machine():
    hw = detect(gpu_offload=False)
    assert hw.total_ram > hw.available_ram > 0
    assert 1 <= hw.cpu_threads <= hw.logical_cpus
