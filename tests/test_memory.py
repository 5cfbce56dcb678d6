"""The memory estimate (qwenlocal/memory.py) against what llama.cpp allocates: the KV cache, the
recurrent state and the compute buffer it reports, and the resident memory a context adds,
measured in a fresh process for each size, at 4K, 32K, 128K and 262K, with an f16 and a q8_0 KV
cache. The model has Qwen3.5-0.8B's shapes (its attention and Gated DeltaNet layers, width and
heads); its feed-forward and vocabulary are narrowed, which changes only the weights' size (and
makes the compute buffer a little smaller than for the real model: the estimate is an upper
bound). With the benchmark's full-shape 0.8B in the cache (`python -m bench` writes it), the same
is checked on it too.

4K runs with the suite; the larger sizes take a few seconds each (a 262K context allocates
3 GiB): `pytest -m memory` runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from qwenlocal.models.catalog import load
from qwenlocal.models.memory import compute_bytes, context_bytes, kv_bytes
from qwenlocal.testing import ggufs

MiB = 1024**2
SPEC = load().models["qwen3.5-0.8b"]
SIZES = [4096, 32768, 131072, 262144]
FULL_SHAPE = Path.home() / ".cache/qwenlocal/llama-bench/models/qwen35-0.8b-shape-q4_k_m.gguf"

PROBE = """
import collections, json, re, sys, psutil
from qwenlocal.engine import LlamaEngine, LoadOptions, llamacpp
llamacpp.log_lines = collections.deque(maxlen=100000)
path, kv, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = LlamaEngine(path, LoadOptions(n_ctx=n, n_threads=2, n_batch=512, kv_cache=kv))
before = psutil.Process().memory_info().rss
engine.model.open()
engine.model.eval([1] * 8)
after = psutil.Process().memory_info().rss
found = {}
for line in llamacpp.log_lines:
    m = re.search(r"CPU (KV|RS|compute) buffer size = +([0-9.]+) MiB", line)
    if m:
        found[m.group(1)] = float(m.group(2)) * 1024 * 1024
print(json.dumps({**found, "rss": after - before, "n_ctx": engine.n_ctx}))
"""


@pytest.fixture(scope="module")
def shaped(tmp_path_factory) -> Path:
    shape = replace(ggufs.QWEN35_0_8B, n_ff=256, n_vocab=None)
    return ggufs.write_random(tmp_path_factory.mktemp("mem") / "shape-0.8b.gguf", shape, f16=True)


def measure(path: Path, kv: str, n_ctx: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), kv, str(n_ctx)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def check(found: dict, kv: str, n_ctx: int, slack: int) -> None:
    assert found["n_ctx"] == n_ctx
    assert found["KV"] == kv_bytes(SPEC, n_ctx, kv)  # exact: cells x layers x heads x dims x type
    assert abs(found["RS"] - SPEC.recurrent_bytes) < 0.01 * SPEC.recurrent_bytes
    estimate = compute_bytes(SPEC, n_ctx)
    assert found["compute"] <= estimate <= found["compute"] + slack
    # resident memory: all of the KV cache and state (llama.cpp clears them), within the estimate
    assert 0.95 * (found["KV"] + found["RS"]) <= found["rss"] <= context_bytes(SPEC, n_ctx, kv)


@pytest.mark.parametrize("n_ctx", [SIZES[0], *(pytest.param(n, marks=pytest.mark.memory) for n in SIZES[1:])])
def test_the_estimate_matches_what_llama_cpp_allocates(shaped, n_ctx):
    f16, q8 = measure(shaped, "f16", n_ctx), measure(shaped, "q8_0", n_ctx)
    check(f16, "f16", n_ctx, slack=16 * MiB)
    check(q8, "q8_0", n_ctx, slack=16 * MiB)
    # q8_0 halves the KV cache (34 bytes per 32 values against 64), measured
    assert q8["KV"] / f16["KV"] == pytest.approx(34 / 64)
    if n_ctx >= 131072:  # where the cache is most of the context's memory
        assert q8["rss"] < 0.6 * f16["rss"]


@pytest.mark.memory
@pytest.mark.skipif(not FULL_SHAPE.exists(), reason="the benchmark's full-shape 0.8B is not cached")
@pytest.mark.parametrize("n_ctx", [4096, 262144])
def test_the_estimate_matches_on_the_full_shape(n_ctx):
    check(measure(FULL_SHAPE, "f16", n_ctx), "f16", n_ctx, slack=4 * MiB)
