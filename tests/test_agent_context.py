"""Long agent runs stay inside the context: older tool results are shortened (never the system
prompt, the task or the latest steps), rarely and in batches, and each step evaluates only its new
tokens. The fake engine counts a token per word and refuses a prompt that does not fit, as the
real one does; the last tests run the real engine on scripted GGUFs."""

from __future__ import annotations

import json

import pytest

from qwenlocal.agent.approval import YES, Approver
from qwenlocal.agent.context import HEAD, KEEP_STEPS, TAIL, ContextBudget
from qwenlocal.agent.events import ContextShortened, Finished, ModelReplied
from qwenlocal.agent.loop import Agent, Limits
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import Workspace
from qwenlocal.agent.undo import Run
from qwenlocal.engine import GenerateOptions
from qwenlocal.models.catalog import load
from qwenlocal.testing.engine import FakeEngine
from qwenlocal.testing.toolcalls import tool_call as call

OPTIONS = GenerateOptions(sampling=load().models["qwen3.5-2b"].sampling(False))
MARK = "characters of an earlier result removed to fit the context"


@pytest.fixture
def project(tmp_path):
    """Twenty files of 300 words (~2,400 characters) each: 20 results need ~6,000 fake tokens."""
    root = tmp_path / "project"
    root.mkdir()
    for i in range(20):
        words = [f"f{i}w{j}" for j in range(300)]
        (root / f"part{i}.txt").write_text("\n".join(" ".join(words[k : k + 10]) for k in range(0, 300, 10)))
    return root


def run(project, replies, n_ctx, max_steps=25, max_tokens=None):
    engine = FakeEngine(replies, n_ctx=n_ctx)
    events = []
    options = GenerateOptions(OPTIONS.sampling, max_tokens=max_tokens)
    agent = Agent(
        engine,
        options,
        Workspace(project, Shell(sandbox=False)),
        Approver(mode=YES),
        Run(project),
        events.append,
        Limits(max_steps=max_steps),
    )
    return agent, engine, events


def reads(n: int) -> list[str]:
    return [call("read_file", path=f"part{i}.txt") for i in range(n)] + ["All parts read."]


def test_a_long_run_that_would_overflow_finishes(project):
    # 20 results of ~330 fake tokens; a 4,000-token context holds about nine of them
    agent, engine, events = run(project, reads(20), n_ctx=4000)
    task = "read every part"
    assert agent.solve(task) == Finished("All parts read.", "answered", 21)
    shortened = [e for e in events if isinstance(e, ContextShortened)]
    assert shortened, "the run fit without shortening: the test proves nothing"
    system = engine.seen[0][0]
    for seen in engine.seen:
        assert seen[0] == system and seen[1] == {"role": "user", "content": task}  # never touched
        assert len(engine.prompt_tokens(seen, False)) <= agent.budget.limit  # room for the reply
        replies = [i for i, m in enumerate(seen) if m["role"] == "assistant"]
        latest = replies[-KEEP_STEPS:] if len(replies) >= KEEP_STEPS else replies
        for m in seen[latest[0] :] if latest else []:  # the latest steps' results are whole
            assert MARK not in (m.get("content") or "")
    last = engine.seen[-1]
    cut = [m["content"] for m in last if m["role"] == "tool" and MARK in m["content"]]
    assert cut and len(cut) < 20
    whole = engine.seen[1][-1]["content"]  # the first result, as the second step saw it
    # the head and the tail of the oldest result are kept around the mark, oldest first
    assert cut[0].startswith(whole[:HEAD]) and cut[0].endswith(whole[-TAIL:])
    assert len(cut[0]) < HEAD + TAIL + 100
    # the model's own calls are never shortened
    calls = [m["tool_calls"][0]["function"]["arguments"] for m in last if m.get("tool_calls")]
    assert calls == [{"path": f"part{i}.txt"} for i in range(20)]


def test_shortening_comes_rarely_and_frees_a_margin(project):
    agent, engine, events = run(project, reads(20), n_ctx=4000)
    agent.solve("read every part")
    shortened = [e for e in events if isinstance(e, ContextShortened)]
    # a quarter of the context freed at once: a few shortenings in 20 steps, not one per step
    assert 1 <= len(shortened) <= 5
    # the first shortening, with many whole results to cut, frees the full margin; later ones
    # free what the results not yet shortened hold
    assert shortened[0].tokens_after <= agent.budget.target
    for event in shortened:
        assert event.tokens_after <= agent.budget.limit < event.tokens_before
        assert event.n_ctx == 4000 and event.results >= 1 and event.characters > 0
        assert event.text.startswith(f"context: {event.results} earlier tool result")  # the line shown
    # between two shortenings, the prompt only grows: its prefix, and so the engine's state, stays
    steps = [len(engine.prompt_tokens(seen, False)) for seen in engine.seen]
    drops = sum(1 for a, b in zip(steps, steps[1:], strict=False) if b < a)
    assert drops == len(shortened)


def test_the_transcript_records_the_shortening_and_keeps_results_whole(project):
    agent, _, _ = run(project, reads(20), n_ctx=4000)
    agent.solve("read every part")
    records = [json.loads(line) for line in agent.run.transcript.read_text().splitlines()]
    context = [r for r in records if r["type"] == "context"]
    assert context and all(r["n_ctx"] == 4000 and r["step"] >= 2 for r in context)
    assert context[0]["tokens_after"] < context[0]["tokens_before"] and context[0]["shortened"] >= 1
    results = [r["result"] for r in records if r["type"] == "tool_result"]
    assert len(results) == 20 and not any(MARK in r for r in results)


def test_when_nothing_more_can_be_shortened_the_run_stops_with_a_reason(project):
    # two steps' results are kept whole; with those, even the task does not leave room for a reply
    agent, engine, events = run(project, reads(20), n_ctx=1100)
    result = agent.solve("read every part")
    assert result.reason.startswith("stopped: the conversation is ")
    assert "a reply needs 275 more, but the context holds 1100 (raise --ctx)" in result.reason
    assert result.steps == len(engine.seen) + 1 < 20  # it stopped before asking the model again


def test_a_task_that_cannot_fit_stops_at_step_1_with_a_reason(project):
    agent, engine, _ = run(project, reads(1), n_ctx=200)
    result = agent.solve("word " * 300)  # the fake engine refuses it outright
    assert result.reason.startswith("stopped: the conversation is over 200 tokens and a reply needs 50")
    assert result.steps == 1 and engine.seen == []


def test_room_for_the_reply_is_max_tokens_when_set(project):
    agent, _, _ = run(project, [], n_ctx=8000, max_tokens=500)
    assert agent.budget.reserve == 500 and agent.budget.limit == 7500
    agent, _, _ = run(project, [], n_ctx=8000)
    assert agent.budget.reserve == 2000  # a quarter of a small context, at most ANSWER_ROOM


def test_a_run_that_fits_is_left_alone(project):
    agent, engine, events = run(project, reads(3), n_ctx=32768)
    agent.solve("read three parts")
    assert not any(isinstance(e, ContextShortened) for e in events)
    assert not any(MARK in (m.get("content") or "") for m in engine.seen[-1])


def test_short_results_are_not_worth_shortening():
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "t"},
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "x" * 2000},
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "short"},
        {"role": "tool", "content": "y" * 2000},
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "z" * 2000},
    ]
    assert ContextBudget.shortenable(messages) == [3]


# -- the real engine -------------------------------------------------------------------------


def real_agent(model_path, project, n_ctx, max_steps):
    from qwenlocal.engine import LlamaEngine, LoadOptions

    engine = LlamaEngine(model_path, LoadOptions(n_ctx=n_ctx, n_threads=2))
    events = []
    options = GenerateOptions(OPTIONS.sampling.__class__(0.0, 1.0, 0, 0.0, 0.0, 1.0))
    agent = Agent(
        engine,
        options,
        Workspace(project, Shell(sandbox=False)),
        Approver(mode=YES),
        Run(project),
        events.append,
        Limits(max_steps=max_steps, max_repeats=100),
    )
    return agent, engine, events


@pytest.fixture(scope="module")
def reading_model(tmp_path_factory):
    """Always reads part0.txt, whatever the results say: a run as long as its step limit."""
    from qwenlocal.testing import ggufs

    path = tmp_path_factory.mktemp("ctx") / "reader.gguf"
    return ggufs.write_scripted(path, {"\n\n": call("read_file", path="part0.txt")})


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_each_step_evaluates_only_its_new_tokens_until_a_shortening(reading_model, project):
    # each result is ~2,000 characters, ~1,700 of Qwen's tokens (its digits are a token each):
    # the fourth step no longer fits 7K tokens with room for a reply
    agent, engine, events = real_agent(reading_model, project, 7168, 4)
    with engine:
        result = agent.solve("read part 0, again and again")
        hi = [{"role": "user", "content": "hi"}]
        # the assistant's opening, which each prompt ends with and the next renders differently
        opening = len(engine.tokenize(engine.render(hi, False), special=True)) - len(
            engine.tokenize(engine.render(hi, False, generation=False), special=True)
        )
    assert result.reason == "stopped: the limit of 4 steps was reached"  # not an overflow
    stats = [e.done.stats for e in events if isinstance(e, ModelReplied)]
    assert len(stats) == 4 and stats[0].reused_tokens == 0
    for before, now in zip(stats[:2], stats[1:3], strict=True):
        # the whole previous prompt but its opening comes from the engine's state: only the
        # call and its result are evaluated
        assert now.reused_tokens == before.prompt_tokens - opening
    (shortened,) = [e for e in events if isinstance(e, ContextShortened)]
    assert shortened.results == 1 and shortened.tokens_before > agent.budget.limit
    # the shortened prompt fits, and is evaluated again from a checkpoint before the change
    assert stats[3].prompt_tokens == shortened.tokens_after <= agent.budget.limit
    assert stats[3].reused_tokens < stats[2].prompt_tokens
