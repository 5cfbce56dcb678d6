"""Long context: `run` sizes its context to the prompt (and refuses only what memory cannot hold),
chat and the agent grow the context instead of dropping what they hold, the state moved into the
larger context rather than read again, and a long prompt's reading shows progress and stops on
Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from qwenlocal.config import Settings
from qwenlocal.conversation import Conversation
from qwenlocal.engine import LlamaEngine, LoadOptions
from qwenlocal.errors import ExitCode
from qwenlocal.events import PromptProgress
from qwenlocal.models import hardware
from qwenlocal.render import reading_text
from qwenlocal.session import ChatSession
from qwenlocal.testing.cli import run as cli

from .conftest import ANSWER

GiB = 1024**3


def words(n: int, seed: int = 0) -> str:
    """About `n` tokens of text: Qwen3.5's tokenizer reads each of these words, with its leading
    space, as one token."""
    vocab = ["alpha", "beta", "gamma", "delta", "lorem", "ipsum"]
    out, i = [], seed
    for _ in range(n):
        out.append(vocab[i % len(vocab)])
        i = (i * 7 + 3) % 1_000_003
    return " ".join(out)


def machine(available: int) -> hardware.Hardware:
    return hardware.Hardware(available, available, 2, 2, system="test")


@pytest.fixture
def small_default(monkeypatch):
    """The pick's default context lowered from 32K to 4K: what is past it is read in seconds."""
    monkeypatch.setattr(hardware, "DEFAULT_CTX", 4096)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_prompt_past_the_default_gets_a_larger_context_end_to_end(answer_model):
    text = words(40_000)  # past the 32K default
    result = subprocess.run(
        [sys.executable, "-m", "qwenlocal", "run", "-m", str(answer_model), "--no-think", "--json", "sum up"],
        input=text.encode(),
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # stdout holds the answer alone (here its JSON object)
    assert data["answer"] == ANSWER
    stats = data["stats"]
    assert stats["prompt_tokens"] > 32768  # past the default
    assert stats["prompt_tokens"] + 4096 <= stats["n_ctx"] < stats["prompt_tokens"] + 4096 + 1024
    notice = result.stderr.decode()
    assert notice.startswith("qwenlocal: context sized to the prompt: ")
    assert f"{stats['n_ctx']} tokens ({stats['prompt_tokens']} of prompt + 4096 for the answer" in notice
    assert "the default is 32768" in notice


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_the_answers_room_is_max_tokens(small_default, answer_model):
    result = cli("run", "-m", str(answer_model), "--no-think", "--json", "--max-tokens", "100", "x",
                 input=words(6000).encode())  # fmt: skip
    stats = json.loads(result.stdout)["stats"]
    assert stats["n_ctx"] == -(-(stats["prompt_tokens"] + 100) // 1024) * 1024
    assert "+ 100 for the answer; the default is 4096" in result.stderr.decode()


def test_a_prompt_within_the_default_keeps_it_quietly(small_default, answer_model):
    result = cli("run", "-m", str(answer_model), "--no-think", "--json", "hi")
    assert json.loads(result.stdout)["stats"]["n_ctx"] == 4096
    assert result.stderr == b""


def test_a_context_the_user_fixed_stays_and_refuses(small_default, answer_model):
    result = cli("run", "-m", str(answer_model), "--ctx", "4096", "x", input=words(6000).encode())
    assert result.returncode == ExitCode.CONTEXT_OVERFLOW
    assert "the context holds 4096" in result.stderr.decode()


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_only_what_memory_cannot_hold_is_refused_with_the_numbers(monkeypatch, answer_model):
    """A machine whose free memory holds this file and about 12K tokens of context (22K with a
    q8_0 cache): 6K tokens are read (past the 4K default), 30K are refused with what fits."""
    monkeypatch.setattr(hardware, "DEFAULT_CTX", 4096)
    small = machine(answer_model.stat().st_size + int(1.05 * GiB))  # the file, and ~12K tokens
    monkeypatch.setattr("qwenlocal.models.loader.detect", lambda: small)
    from qwenlocal.models.loader import file_spec
    from qwenlocal.models.memory import largest_context

    spec = file_spec(answer_model)
    choice = hardware.pick(small, None, hardware.Want(model=spec, quant="FILE"))
    assert 8192 <= choice.max_ctx < 14_000, choice.reason
    q8 = largest_context(spec, choice.context_room, "q8_0")
    ok = cli("run", "-m", str(answer_model), "--no-think", "--json", "--max-tokens", "8", "x",
             input=words(6000).encode())  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stats"]["n_ctx"] > 6000
    refused = cli("run", "-m", str(answer_model), "--no-think", "x", input=words(30_000).encode())
    assert refused.returncode == ExitCode.CONTEXT_OVERFLOW
    err = refused.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the prompt is " in err and "free memory holds a context of" in err
    assert f"holds a context of {q8} tokens" in err and "q8_0 KV cache" in err  # the most that fits
    assert "hint: shorten the input to about" in err and refused.stdout == b""


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_the_q8_0_cache_is_taken_only_when_it_makes_the_prompt_fit(monkeypatch, answer_model):
    monkeypatch.setattr(hardware, "DEFAULT_CTX", 4096)
    small = machine(answer_model.stat().st_size + int(1.05 * GiB))  # the file, and ~12K tokens
    monkeypatch.setattr("qwenlocal.models.loader.detect", lambda: small)
    from qwenlocal.models.loader import file_spec
    from qwenlocal.models.memory import largest_context

    choice = hardware.pick(small, None, hardware.Want(model=file_spec(answer_model), quant="FILE"))
    f16, q8 = choice.max_ctx, largest_context(choice.model, choice.context_room, "q8_0")
    assert q8 > f16 + 4096
    fits_q8_only = words(f16 + 1024)
    result = cli("run", "-m", str(answer_model), "--no-think", "--json", "--max-tokens", "8", "x",
                 input=fits_q8_only.encode())  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "with a q8_0 KV cache to fit in memory" in result.stderr.decode()
    chosen = cli("run", "-m", str(answer_model), "--kv-cache", "f16", "x", input=fits_q8_only.encode())
    assert chosen.returncode == ExitCode.CONTEXT_OVERFLOW  # the user's choice of cache stands


def test_the_pick_takes_q8_0_only_for_an_asked_context_that_f16_cannot_hold():
    from qwenlocal.models.catalog import load

    spec = load().models["qwen3.5-0.8b"]
    small = machine(int(3.2 * GiB))
    asked = hardware.pick(small, load(), hardware.Want(model=spec, n_ctx=262144))
    assert asked.kv_cache == "q8_0" and asked.fits
    assert "KV cache q8_0 chosen: with an f16 cache a 256K context does not fit" in asked.reason
    assert hardware.pick(small, load(), hardware.Want(model=spec, n_ctx=32768)).kv_cache == "f16"
    assert hardware.pick(small, load(), hardware.Want(model=spec)).kv_cache == "f16"
    forced = hardware.pick(small, load(), hardware.Want(model=spec, n_ctx=262144, kv_cache="f16"))
    assert forced.kv_cache == "f16" and not forced.fits
    assert "Contexts up to" in asked.reason


# -- chat: the context grows, the state moves --------------------------------------------------

GREEDY = Settings(temperature=0.0, max_tokens=8, think=False)


def chat_turns(engine: LlamaEngine, turns: int) -> tuple[ChatSession, list]:
    from qwenlocal.models.loader import Loaded

    session = ChatSession(GREEDY, Conversation(system="You are terse."))
    session.loaded = Loaded(engine, None, None, "test")
    record = []
    for turn in range(turns):
        session.conversation.add("user", f"turn {turn}: " + words(300, seed=turn))
        dropped = session.fit_context()
        done = list(session.answer())[-1]
        record.append((dropped, session.grown, done))
    return session, record


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_chat_grows_the_context_and_keeps_its_early_turns(random_model, tmp_path):
    options = LoadOptions(n_ctx=1024, n_threads=2, n_batch=256, max_ctx=4096)
    with LlamaEngine(random_model, options) as engine:
        session, record = chat_turns(engine, 6)
        assert engine.n_ctx == 4096
    grown = [(turn, g) for turn, (_, g, _) in enumerate(record) if g]
    assert [g for _, g in grown] == [(1024, 2048), (2048, 4096)]
    assert all(dropped == 0 for dropped, _, _ in record)
    assert session.conversation.dropped == []
    assert session.conversation.messages[0]["content"].startswith("turn 0: ")
    for turn, _ in grown:  # the turn that grew read only its own message: the rest was moved
        done, before = record[turn][2], record[turn - 1][2]
        assert done.stats.reused_tokens >= before.stats.prompt_tokens - 32  # all but its assistant opening
        assert done.stats.prompt_tokens - done.stats.reused_tokens < 400
    # and it answers as a context that read the whole conversation at once
    messages = session.conversation.for_model()[:-1]
    with LlamaEngine(random_model, LoadOptions(n_ctx=4096, n_threads=2)) as fresh:
        options = session.loaded.generate_options(GREEDY)
        assert list(fresh.stream(messages, options))[-1].tokens == record[-1][2].tokens


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_chat_drops_turns_once_memory_allows_no_more(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=1024, n_threads=2, n_batch=256, max_ctx=2048)) as engine:
        session, record = chat_turns(engine, 8)
        assert engine.n_ctx == 2048
    assert any(dropped for dropped, _, _ in record)
    assert session.conversation.dropped[0]["content"].startswith("turn 0: ")


# -- the agent: growth before shortening ---------------------------------------------------------


def test_the_agent_grows_the_context_before_shortening_results():
    from qwenlocal.agent.context import ContextBudget
    from qwenlocal.agent.events import ContextGrown
    from qwenlocal.testing.engine import FakeEngine

    engine = FakeEngine([], n_ctx=4096, max_ctx=16384)
    budget = ContextBudget(engine, False, [])
    messages = [{"role": "user", "content": "task"}]
    for i in range(3):
        messages += [
            {"role": "assistant", "content": f"reading {i}"},
            {"role": "tool", "content": "word " * 1500},
        ]
    grown = budget.fit(messages)
    assert isinstance(grown, ContextGrown) and (grown.before, grown.after) == (4096, 8192)
    assert all(len(m["content"]) == 7500 for m in messages if m["role"] == "tool")  # nothing shortened
    assert budget.limit == 8192 - 2048


# -- reading a long prompt: progress, Ctrl-C ----------------------------------------------------


def test_progress_reads_as_done_of_total_rate_and_time_left():
    event = PromptProgress(12_288, 100_000, 94.5)
    assert reading_text(event) == "reading the prompt: 12,288/100,000 tokens (12%) · 130 tok/s · 11m14s left"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_prompt_reading_shows_progress_on_a_terminal_and_stops_at_ctrl_c(answer_model, tmp_path):
    """stderr on a terminal shows the reading's progress; Ctrl-C stops it at once (exit 130) with
    nothing on stdout; the piped stdout stays clean throughout."""
    document = tmp_path / "book.txt"
    document.write_text(words(60_000))
    main, child = pty.openpty()
    with document.open("rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qwenlocal", "run", "-m", str(answer_model), "--no-think", "summarize"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=child,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
        )
    os.close(child)
    try:
        seen = b""
        deadline = time.monotonic() + 300
        while b" left" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if ready:
                seen += os.read(main, 4096)
        pattern = rb"reading the prompt: [\d,]+/6\d,\d{3} tokens \(\d+%\) .+ \d+ tok/s .+ left"
        assert re.search(pattern, seen), seen
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        os.close(main)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert out == b""  # nothing half-written: no answer had started


def test_doctor_shows_the_largest_context_for_each_model():
    result = cli("doctor", "--json")
    data = json.loads(result.stdout)
    assert set(data["contexts"]) == {"qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"}
    for sizes in data["contexts"].values():
        assert 0 <= sizes["f16"] <= sizes["q8_0"] <= 262144
    assert data["pick"]["max_ctx"] >= data["pick"]["n_ctx"]
    assert "Contexts up to " in data["pick"]["reason"]
    text = cli("doctor").stdout.decode()
    assert "contexts: the largest this machine's free memory gives each model (f16 / q8_0 KV cache)" in text
