"""A tool call written inside the reasoning (before `</think>`) ends the reasoning and runs, on the
real engine with scripted GGUFs: small thinking models often call a tool without closing their
think block, and llama.cpp treats `<tool_call>` as the end of the reasoning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenlocal.agent.tools import SCHEMAS
from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.events import Done, Notice, ReasoningDelta, TextDelta
from qwenlocal.models.catalog import load
from qwenlocal.testing import ggufs
from qwenlocal.testing.toolcalls import tool_call

from .conftest import LONG_REASONING

SMALL = load().models["qwen3.5-0.8b"]
TASK = [{"role": "user", "content": "what does utils.py do?"}]
REASONING = "I should read utils.py first."
CALL = tool_call("read_file", path="utils.py")
ANSWER = "It adds two numbers."


def options(**kw) -> GenerateOptions:
    return GenerateOptions(sampling=SMALL.sampling(True), think=True, **kw)


def collect(events) -> tuple[str, str, list[str], Done]:
    events = list(events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return text, reasoning, [e.text for e in events if isinstance(e, Notice)], events[-1]


@pytest.fixture(scope="module")
def calls_in_reasoning(tmp_path_factory) -> Path:
    """Thinks, then calls read_file without closing the think block; after the result, answers."""
    path = tmp_path_factory.mktemp("models") / "call-in-reasoning.gguf"
    return ggufs.write_scripted(
        path, {"\n": f"{REASONING}\n{CALL}"}, after_tool=ggufs.think_reply("It adds.", ANSWER)
    )


def test_the_engine_ends_the_reasoning_at_a_call_when_tools_are_offered(calls_in_reasoning):
    with LlamaEngine(calls_in_reasoning, LoadOptions(n_ctx=8192, n_threads=2)) as engine:
        text, reasoning, _, done = collect(engine.stream(TASK, options(), SCHEMAS))
        assert (reasoning, text) == (REASONING, CALL)
        assert (done.reasoning, done.answer) == (REASONING, CALL)
        assert done.stats.reasoning_tokens < done.stats.generated_tokens
        # without tools a <tool_call> is only words: it stays in the reasoning
        text, reasoning, _, done = collect(engine.stream(TASK, options()))
        assert (reasoning, text) == (f"{REASONING}\n{CALL}", "")


def test_the_reasoning_budget_still_applies_with_tools(long_think_model):
    with LlamaEngine(long_think_model, LoadOptions(n_ctx=8192, n_threads=2)) as engine:
        text, reasoning, notices, done = collect(engine.stream(TASK, options(think_budget=20), SCHEMAS))
        assert done.stats.reasoning_tokens == 20 and any("budget" in n for n in notices)
        assert text == "Done." and len(reasoning) < len(LONG_REASONING)


def test_the_agent_runs_a_call_written_inside_the_reasoning(cli, tmp_path, calls_in_reasoning):
    project = tmp_path / "project"
    project.mkdir()
    (project / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    result = cli(
        "agent", "-m", str(calls_in_reasoning), "--think", "--workspace", str(project), "what does it do?"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == ANSWER + "\n"
    line = next(x for x in result.stderr.decode().splitlines() if "transcript:" in x)
    records = [json.loads(r) for r in Path(line.split("transcript:", 1)[1].strip()).read_text().splitlines()]
    first = next(r for r in records if r["type"] == "assistant")
    # the transcript keeps reasoning, text and calls apart
    assert (first["reasoning"], first["content"], first["raw"]) == (REASONING, "", CALL)
    assert first["tool_calls"] == [{"name": "read_file", "arguments": {"path": "utils.py"}}]
    [result_record] = [r for r in records if r["type"] == "tool_result"]
    assert result_record["ok"] and "return a + b" in result_record["result"]
