"""Smoke test of the benchmark harness on a tiny model: it builds llama-bench from the vendored
llama.cpp, runs both side by side and writes the report and chart. No timing is asserted.

Marked `bench`: the default `pytest` leaves it out; `pytest -m bench` runs it (CI's own step). The
build (minutes, once per llama-cpp-python version) is kept in the user cache dir, outside the
checkout, so later runs and fresh clones reuse it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import llama_bench

ROOT = Path(__file__).resolve().parents[1]
# read at collection, from the real environment: every test's home (and cache dir) is a new one
CACHE = llama_bench.cache_dir()


@pytest.mark.bench
def test_the_harness_runs_end_to_end(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    args = [
        "--models",
        "tiny",
        "--reps",
        "1",
        "--pp",
        "64",
        "--tg",
        "8",
        "--turns",
        "3",
        "--turn-tokens",
        "20",
        "--steps",
        "3",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env={**os.environ, llama_bench.CACHE_ENV: str(CACHE)},
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for words in ("llama-bench", "| tiny", "turn 3", "Cold start", "peak RSS", "ratio", "load (1 min)"):
        assert words in report
    png = tmp_path / "bench" / "multiturn.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (model,) = json.loads((tmp_path / "bench" / "results.json").read_text())["models"]
    # every timed run is kept: one round of two samples per side, a turn time per turn
    for key in ("ours_pp", "ref_pp", "ours_tg", "ref_tg"):
        assert len(model[key]) == 2 and all(v > 0 for v in model[key])
    assert len(model["turns"]) == 3 and len(model["turns_no_reuse"]) == 3
    # the agent's steps best of 3 runs, llama-bench's reference once after each run
    assert len(model["agent_runs_s"]) == 3 and all(len(run) == 3 for run in model["agent_runs_s"])
    assert [len(ref) for ref in model["agent_reference_runs"]] == [3, 3]
    assert model["load"] > 0 and model["turns_load"] > 0 and model["agent_load"] > 0
