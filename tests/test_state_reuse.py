"""Multi-turn state reuse: each turn evaluates only its new tokens, with the same result."""

from __future__ import annotations

import pytest

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.models.catalog import load

SPEC = load().models["qwen3.5-0.8b"]
GREEDY = GenerateOptions(sampling=SPEC.sampling(False).__class__(0.0, 1.0, 0, 0.0, 0.0, 1.0), max_tokens=12)


def conversation(engine: LlamaEngine, turns: int, think: bool, fresh_each_turn: bool, path):
    """Greedy answers to `turns` user messages; returns (answers, stats per turn)."""
    options = GenerateOptions(GREEDY.sampling, think=think, max_tokens=12)
    messages = [{"role": "system", "content": "You are terse."}]
    answers, stats = [], []
    for turn in range(turns):
        messages.append(
            {"role": "user", "content": f"Question number {turn}: " + "tell me more " * (5 + turn)}
        )
        if fresh_each_turn:
            with LlamaEngine(path, LoadOptions(n_ctx=2048, n_threads=2)) as fresh:
                done = list(fresh.stream(messages, options))[-1]
        else:
            done = list(engine.stream(messages, options))[-1]
        answers.append(done.tokens)
        stats.append(done.stats)
        messages.append({"role": "assistant", "content": done.answer, "reasoning_content": done.reasoning})
    return answers, stats


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize("think", [False, True])
def test_reuse_gives_the_same_tokens_as_a_fresh_evaluation(random_model, think):
    with LlamaEngine(random_model, LoadOptions(n_ctx=2048, n_threads=2)) as engine:
        reused, stats = conversation(engine, 4, think, False, random_model)
        hi = [{"role": "user", "content": "hi"}]
        # the assistant's opening, which each prompt ends with and the next renders differently
        opening = len(engine.tokenize(engine.render(hi, think), special=True)) - len(
            engine.tokenize(engine.render(hi, think, generation=False), special=True)
        )
    fresh, fresh_stats = conversation(None, 4, think, True, random_model)
    assert reused == fresh
    assert stats[0].reused_tokens == 0
    for turn in range(1, 4):
        assert stats[turn].reused_tokens > stats[turn - 1].reused_tokens  # the history is not evaluated again
        evaluated = stats[turn].prompt_tokens - stats[turn].reused_tokens
        new_text = fresh_stats[turn].prompt_tokens - fresh_stats[turn - 1].prompt_tokens
        assert evaluated <= new_text + opening  # this turn's messages only, not the history


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_tool_results_extend_the_prompt_and_reuse_it(random_model):
    """The agent loop: the prompt grows by an assistant tool call and a tool response."""
    with LlamaEngine(random_model, LoadOptions(n_ctx=2048, n_threads=2)) as engine:
        messages = [{"role": "user", "content": "list the files"}]
        tools = [{"type": "function", "function": {"name": "list_files", "parameters": {"type": "object"}}}]
        list(engine.stream(messages, GREEDY, tools))
        history = len(engine.tokenize(engine.render(messages, False, tools, generation=False), special=True))
        messages += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "list_files", "arguments": {}}}],
            },
            {"role": "tool", "content": "a.py\nb.py"},
        ]
        second = list(engine.stream(messages, GREEDY, tools))[-1]
        assert second.stats.reused_tokens == history  # all of the first prompt but its assistant opening
        with LlamaEngine(random_model, LoadOptions(n_ctx=2048, n_threads=2)) as fresh:
            assert list(fresh.stream(messages, GREEDY, tools))[-1].tokens == second.tokens


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_changed_history_is_evaluated_again(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=2048, n_threads=2)) as engine:
        list(engine.stream([{"role": "user", "content": "first question"}], GREEDY))
        done = list(engine.stream([{"role": "user", "content": "another question"}], GREEDY))[-1]
        assert done.stats.reused_tokens < 5  # only the shared start of the template, if anything
        with LlamaEngine(random_model, LoadOptions(n_ctx=2048, n_threads=2)) as fresh:
            expected = list(fresh.stream([{"role": "user", "content": "another question"}], GREEDY))[-1]
        assert done.tokens == expected.tokens
