"""Every benchmark row times qwenlocal to its first generated token: each row's figure, checked
against the stats the engine reports for the same answer, on the tiny test models (seconds).

The warm-start rows (the real CLI in a dozen processes, engines loaded afresh, state files written
and restored) are marked `bench`, as the harness's smoke test is (`pytest -m bench`). No timing is
compared with another: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import agent, loadavg, quick, restore, vision, warm
from bench.__main__ import main as bench_main
from bench.__main__ import multi_turn, prompt_of, run_ours
from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.events import Done
from qwenlocal.models.catalog import load
from qwenlocal.testing import projectors

SAMPLING = load().models["qwen3.5-0.8b"].sampling(False)
# a step's figure adds the agent loop's own work before the engine starts (rendering and counting
# the prompt for the context budget): well under this, even on a loaded 2-core machine
LOOP_SLACK_S = 3.0


class Recording:
    """The engine, with every answer's Done kept: what the engine itself reported."""

    def __init__(self, engine: LlamaEngine) -> None:
        self.engine, self.done = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, *args, **kwargs):
        for event in self.engine.stream(*args, **kwargs):
            if isinstance(event, Done):
                self.done.append(event)
            yield event


@pytest.fixture
def engine(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=4096, n_threads=2)) as loaded:
        yield Recording(loaded)


def test_the_text_rows_are_the_engines_own_time_to_first_token(engine):
    options = GenerateOptions(SAMPLING, max_tokens=4, ignore_eos=True, seed=1)
    _, _, ttft = run_ours(engine, options, prompt_of(engine, 64))  # the prefill table's TTFT
    assert ttft == engine.done[-1].stats.ttft_s > 0
    turns = multi_turn(engine, 2, 20, reuse=True)  # the multi-turn table
    assert turns == [d.stats.ttft_s for d in engine.done[-2:]]
    assert engine.done[-1].stats.reused_tokens > 0  # the second turn went on from the first


def test_agent_steps_are_timed_to_the_first_generated_token(engine):
    run = agent.agent_steps(engine, SAMPLING, 2, 40)
    assert [s.ttft_s for s in run.stats] == [d.stats.ttft_s for d in engine.done]
    for figure, stats in zip(run.ttfts, run.stats, strict=True):
        assert stats.ttft_s <= figure <= stats.ttft_s + LOOP_SLACK_S
    (first, at0), (second, depth) = run.evaluated
    assert at0 == 0 and depth > 0 and second < first  # step 2 read only its new tokens
    assert run.progress[0][-1][0] == first  # the progress events cover the prompt read


def test_the_image_row_times_the_first_generated_token(random_model, models_dir, tmp_path):
    """It timed the first event, the reading progress: 39x faster than llama-mtmd-cli, once."""
    mmproj = projectors.write_projector(models_dir / "mmproj-bench-rows.gguf")
    data = projectors.write_png(tmp_path / "photo.png", 96, 64).read_bytes()
    with LlamaEngine(random_model, LoadOptions(n_ctx=4096, n_threads=2), mmproj) as loaded:
        engine = Recording(loaded)
        figure, stats = vision.our_ttft(engine, data)
        assert stats is engine.done[-1].stats and stats.image_tokens > 0
        # from the image's bytes: decoding and cutting it into patches come before the engine's clock
        assert stats.ttft_s <= figure <= stats.ttft_s + 2.0
        with_image, text_only = vision.follow_ups(engine, data)
        assert (with_image, text_only) == (engine.done[-3].stats.ttft_s, engine.done[-1].stats.ttft_s)


@pytest.mark.bench
def test_the_agent_warm_row_restores_what_the_cold_run_kept(random_model, tmp_path, monkeypatch):
    monkeypatch.setattr(warm, "AGENT_SAMPLES", 1)
    args = argparse.Namespace(threads=2, turn_tokens=40)
    row = warm.agent_row(random_model, args, tmp_path, SAMPLING)
    (cold,), (warm_step,) = row["cold"], row["warm"]
    assert cold["cached_tokens"] == 0 and warm_step["cached_tokens"] == row["restored"] > 256
    assert cold["prompt_tokens"] == warm_step["prompt_tokens"]  # the same prompt, one project folder
    for step in (cold, warm_step):
        assert step["engine_ttft_s"] <= step["ttft_s"] <= step["engine_ttft_s"] + LOOP_SLACK_S
    (reading,), (restoring,) = row["reading"], row["restoring"]
    assert 0 < reading < cold["engine_ttft_s"] and 0 < restoring < warm_step["engine_ttft_s"]


@pytest.mark.bench
def test_the_prefix_table_restores_every_length_exactly(random_model, tmp_path):
    rows = restore.measure(random_model, 2, tmp_path / "states", 1, sizes=(16, 300))
    assert [r["tokens"] for r in rows] == [16, 300]  # reuse() restored exactly these (asserted inside)
    for r in rows:
        assert r["bytes"] > 0 and r["read"][0] > 0 and r["restore"][0] > 0 and len(r["disk"]) <= 1
    lines = restore.section("tiny", rows)
    threshold = f"MIN_TOKENS = {restore.MIN_TOKENS}"
    assert lines[0].startswith(restore.HEADING) and any(threshold in line for line in lines)


def test_quick_takes_its_values_where_the_command_line_gave_none(monkeypatch):
    seen = {}

    def fake(args):  # stands in for the main run: what --quick set is what it would measure
        seen.update(vars(args))
        return 0

    monkeypatch.setattr("bench.__main__.only_warm", fake)
    bench_main(["--quick", "--only", "warm", "--agent-runs", "5"])
    assert seen["models"] == ["0.8b"] and seen["reps"] == 2 and seen["steps"] == 4
    assert seen["warm_tokens"] == quick.SECTIONS["warm"]["warm_tokens"] and seen["agent_runs"] == 5
    seen.clear()
    bench_main(["--only", "warm"])
    assert seen["models"] == ["0.8b", "2b"] and seen["warm_tokens"] == 16384 and seen["agent_runs"] == 3


def test_a_row_measured_over_the_core_count_says_so():
    assert loadavg.cell(loadavg.CORES + 0.5).endswith(f"⚠ over {loadavg.CORES} cores")
    assert loadavg.cell(loadavg.CORES - 0.5) == f"{loadavg.CORES - 0.5:.1f}"
    with loadavg.watch() as seen:
        pass
    assert len(seen.samples) >= 2 and seen.mean >= 0


def test_the_warm_section_is_replaced_in_place():
    rows = [_warm_row("tiny")]
    args = argparse.Namespace(command="python -m bench --only warm", warm_reps=1, warm_tokens=1000)
    lines = warm.section(rows, args)
    report = "# Benchmarks\n\nintro\n\n![chart](bench/multiturn.png)\n"
    once = warm.splice(report, lines)
    twice = warm.splice(once, lines)
    assert once == twice and once.count(warm.HEADING) == 1 and once.startswith(report.rstrip("\n"))
    assert "| tiny | `run`: a second question over a 1,000-token piped file | 10.00s | 0.50s |" in once


def _warm_row(name: str) -> dict:
    step = {"ttft_s": 1.0, "engine_ttft_s": 0.9, "prompt_tokens": 800, "reused_tokens": 0, "cached_tokens": 0}
    kept = {**step, "ttft_s": 0.2, "engine_ttft_s": 0.1, "reused_tokens": 780, "cached_tokens": 780}
    cli = {"ttft_s": 10.0, "wall_s": 12.0, "prompt_tokens": 1020, "reused_tokens": 0, "cached_tokens": 0}
    cli_warm = {**cli, "ttft_s": 0.5, "wall_s": 2.0, "reused_tokens": 1000, "cached_tokens": 1000}
    agent_row = {"cold": [step], "warm": [kept], "restored": 780, "reading": [0.8], "restoring": [0.02]}
    agent_row["load"] = 1.0
    return {"name": name, "agent": agent_row, "run": {"cold": [cli], "warm": [cli_warm], "load": 3.5},
            "chat": {"cold": [cli], "warm": [cli_warm], "load": 1.2}}  # fmt: skip


@pytest.mark.bench
def test_the_cli_warm_rows_restore_what_the_cold_process_kept(random_model, tmp_path):
    document = agent.module_text(0, 600, lambda text: len(text.split()) * 3)
    messages = [{"role": "user", "content": document}, {"role": "assistant", "content": "Handlers."}]
    args = argparse.Namespace(threads=2, warm_tokens=1000, warm_reps=1)
    rows = warm.cli_rows(random_model, args, tmp_path, document, messages)
    for key in ("run", "chat"):
        (cold,), warm_samples = rows[key]["cold"], rows[key]["warm"]
        assert cold["cached_tokens"] == 0 and len(warm_samples) == warm.WARM_SAMPLES
        for sample in warm_samples:  # each restored what the cold process kept, and read the rest
            assert sample["cached_tokens"] > 256 and sample["reused_tokens"] == sample["cached_tokens"]
            assert sample["prompt_tokens"] - sample["cached_tokens"] < 64
            assert 0 < sample["ttft_s"] < sample["wall_s"]
    assert json.dumps(rows)  # every sample goes into results.json as it is
    assert not list(Path(tmp_path).glob("run-0/qwenlocal/states/.*.tmp"))


def test_a_full_run_keeps_the_sections_only_their_modes_measure():
    from bench import report

    old = "# Benchmarks\n\nold\n\nWarm starts (x):\n\n| a |\n|---|\n\n- note\n"
    new = report.carry(old, "# Benchmarks\n\nnew\n", [(warm.HEADING, warm.CONTINUES)])
    assert new == "# Benchmarks\n\nnew\n\nWarm starts (x):\n\n| a |\n|---|\n\n- note\n"
    assert report.carry(old, new, [(warm.HEADING, warm.CONTINUES)]) == new  # present: left alone
