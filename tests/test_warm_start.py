"""Warm starts: model states kept on disk between processes (engine/diskstate.py).

On the real engine with the test models: a restored state continues exactly as the whole prompt
evaluated (greedy tokens and next-token logits); a second process evaluates only what follows the
stored prefix (two `run`s over the same piped file, `chat --resume`, two agent runs); every fault
(a corrupt, truncated or foreign file, two writers at once, a full disk, an unwritable folder)
degrades to evaluating as before; the folder stays under its cap; `qwenlocal cache` lists and clears.
"""

from __future__ import annotations

import ctypes
import errno
import json
import multiprocessing
import os
import stat
import sys
from pathlib import Path

import pytest

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.engine.base import instructions
from qwenlocal.engine.diskstate import MAGIC, MIN_TOKENS, DiskStates, entries_in
from qwenlocal.events import Done, Notice
from qwenlocal.models.catalog import Sampling
from qwenlocal.testing.cli import run as run_in_process

from .conftest import ANSWER, qwenlocal

GREEDY = GenerateOptions(Sampling(0.0, 1.0, 1, 0.0, 0.0, 1.0), max_tokens=8, ignore_eos=True)
RULES = " ".join(f"Rule {i}: be brief and exact." for i in range(60))
SYSTEM = f"You answer questions about reports. {RULES}"  # ~600 tokens
REPORT = " ".join(f"Line {i} of the report says the value is {i * 7}." for i in range(90))


def options(folder: Path | None, limit: int = 1 << 30, n_ctx: int = 4096) -> LoadOptions:
    return LoadOptions(n_ctx, 2, state_dir=str(folder) if folder else None, state_max=limit)


def conversation(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def answer(path: Path, folder: Path | None, messages: list[dict], keep=()) -> tuple[Done, list]:
    with LlamaEngine(path, options(folder)) as engine:
        events = list(engine.stream(messages, GREEDY, keep=keep))
    return events[-1], [e for e in events if isinstance(e, Notice) and "prompt states" in e.text]


def states(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.state"))


# -- the engine: a restored state is the evaluated one ------------------------------------------


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_restored_prefix_continues_exactly_as_the_whole_prompt(random_model, tmp_path):
    folder = tmp_path / "states"
    first = conversation("What does line 3 say?")
    cold, _ = answer(random_model, folder, first, keep=[instructions(first)])
    assert cold.stats.cached_tokens == 0 and len(states(folder)) == 1
    second = conversation("And line 40?")
    warm, _ = answer(random_model, folder, second, keep=[instructions(second)])
    plain, _ = answer(random_model, None, second)
    assert warm.stats.cached_tokens > 550  # the system prompt, restored from the first process's file
    assert warm.stats.reused_tokens == warm.stats.cached_tokens
    assert warm.stats.prompt_tokens - warm.stats.cached_tokens < 20  # the question alone was read
    assert warm.tokens == plain.tokens


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_restored_logits_match_a_full_evaluation(random_model, tmp_path):
    import numpy as np

    from qwenlocal.engine.generate import evaluate_prompt

    folder = tmp_path / "states"
    messages = conversation("What does line 3 say?")

    def logits(engine: LlamaEngine, keep: tuple[int, ...] = ()) -> tuple[np.ndarray, int]:
        tokens = engine.prompt_tokens(messages, False)
        gen = evaluate_prompt(engine.model, tokens, 0, 0.0, keep=keep)
        try:
            while True:
                next(gen)
        except StopIteration as done:
            run = done.value
        model = engine.model
        n_vocab = model.lib.llama_vocab_n_tokens(model.vocab)
        row = model.lib.llama_get_logits_ith(model.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(row, ctypes.POINTER(ctypes.c_float)), (n_vocab,)).copy(), run

    with LlamaEngine(random_model, options(folder)) as engine:
        tokens = engine.prompt_tokens(messages, False)
        cold, _ = logits(engine, keep=(len(tokens) - 5,))
    with LlamaEngine(random_model, options(folder)) as engine:
        warm, run = logits(engine)
    assert run.restored == len(tokens) - 5
    assert np.allclose(cold, warm, atol=1e-3), float(np.abs(cold - warm).max())


# -- two processes ---------------------------------------------------------------------------------


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_second_run_over_the_same_piped_file_reads_only_its_question(answer_model, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["run", "-m", str(answer_model), "--no-think", "--json"]
    first = qwenlocal(*args, "what does line 3 say?", input=REPORT.encode(), env=env)
    second = qwenlocal(*args, "and line 40?", input=REPORT.encode(), env=env)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    cold, warm = json.loads(first.stdout)["stats"], json.loads(second.stdout)["stats"]
    assert cold["cached_tokens"] == 0
    assert json.loads(second.stdout)["answer"] == ANSWER
    assert warm["cached_tokens"] > 1300  # the report, from the first process's file
    assert warm["prompt_tokens"] - warm["cached_tokens"] < 30  # the question (and the template's end)
    folder = tmp_path / "cache/qwenlocal/states"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in states(folder))
    off = qwenlocal(*args, "--no-cache", "and line 40?", input=REPORT.encode(), env=env)
    assert json.loads(off.stdout)["stats"]["cached_tokens"] == 0


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_chat_resume_reads_only_the_new_message(answer_model, isolated_home):
    args = ("chat", "-m", str(answer_model), "--no-think", "--json")
    first = run_in_process(*args, input=f"{REPORT}\n".encode())
    assert first.returncode == 0, first.stderr
    again = run_in_process(*args, "--resume", input=b"and line 40?\n")
    assert again.returncode == 0, again.stderr
    stats = json.loads(again.stdout.splitlines()[-1])["stats"]
    assert stats["cached_tokens"] > 1300  # the whole first turn, from the first process
    assert stats["prompt_tokens"] - stats["cached_tokens"] < 80  # the answer before it and the new line


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_the_agent_starts_its_second_run_from_its_instructions(tmp_path, isolated_home):
    from qwenlocal.testing import ggufs

    model = ggufs.write_scripted(tmp_path / "done.gguf", {"\n\n": "Nothing to do here."})
    (tmp_path / "work").mkdir()
    args = ["agent", "-m", str(model), "--no-think", "--json", "-w", str(tmp_path / "work")]
    first = run_in_process(*args, "say hello")
    second = run_in_process(*args, "say goodbye")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    cold, warm = json.loads(first.stdout)["stats"], json.loads(second.stdout)["stats"]
    assert cold["cached_tokens"] == 0
    assert warm["cached_tokens"] >= 700  # the system prompt and the tools
    assert warm["prompt_tokens"] - warm["cached_tokens"] < 30


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_serve_keeps_on_disk_what_its_ram_cache_lets_go(answer_model, isolated_home):
    """Two conversations taking turns with a RAM cache too small for either: the one pushed out
    goes to disk, and its next turn is restored from there."""
    import openai

    from qwenlocal.testing.server import serving

    with serving(answer_model, cache_mib=1) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        talks = {
            name: [{"role": "system", "content": f"You are {name}. {RULES * 3}"}] for name in ("ann", "bob")
        }
        cached = {}
        for turn in range(2):
            for name, messages in talks.items():
                messages.append({"role": "user", "content": f"{name} asks question {turn}"})
                body = {"chat_template_kwargs": {"enable_thinking": False}}
                reply = client.chat.completions.create(model="any", messages=messages, extra_body=body)
                messages.append({"role": "assistant", "content": reply.choices[0].message.content})
                cached[name, turn] = reply.usage.prompt_tokens_details.cached_tokens
        stash = running.state.loaded.engine.cache.stash
    assert stash.entries == {}  # nothing fits in the RAM cache's 1 MiB
    assert cached["ann", 1] > 1500  # ann's first turn, pushed out by bob's, came back from disk
    assert len(states(isolated_home / ".cache/qwenlocal/states")) >= 1


# -- faults: each one evaluates as before ------------------------------------------------------


def _spoil(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "corrupt":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "header":  # a damaged length: never read as 4 GiB
        path.write_bytes(MAGIC + b"\xff\xff\xff\xff" + data[len(MAGIC) + 4 :])
    elif how == "foreign":
        path.write_bytes(MAGIC[:-1] + b"\x09" + data[len(MAGIC) :])
    elif how == "mismatched":  # another setup's header under this name
        size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
        header = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
        header["identity"] = header["identity"].replace('"kv_cache": "f16"', '"kv_cache": "q8_0"')
        encoded = json.dumps(header).encode()
        path.write_bytes(MAGIC + len(encoded).to_bytes(4, "little") + encoded + data[len(MAGIC) + 4 + size :])


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize("how", ["corrupt", "truncated", "header", "foreign", "mismatched"])
def test_a_bad_file_is_skipped_and_removed(random_model, tmp_path, how):
    folder = tmp_path / "states"
    messages = conversation("What does line 3 say?")
    cold, _ = answer(random_model, folder, messages, keep=[instructions(messages)])
    [path] = states(folder)
    _spoil(path, how)
    again, notices = answer(random_model, folder, messages)
    assert again.stats.cached_tokens == 0 and again.tokens == cold.tokens and not notices
    assert not path.exists()


def _write_same(folder: str, barrier) -> None:
    store = DiskStates(Path(folder), {"model": "same"}, 1 << 30, min_tokens=1)
    barrier.wait()
    store.save(list(range(500)), bytes(range(256)) * (16 << 10))  # 4 MiB
    store.flush()


def test_two_processes_writing_the_same_state_leave_one_whole_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_write_same, args=(str(tmp_path), barrier)) for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
        assert w.exitcode == 0
    store = DiskStates(tmp_path, {"model": "same"}, 1 << 30, min_tokens=1)
    tokens = list(range(500)) + [7]
    found = store.longest(tokens)
    assert found is not None and found[0] == 500
    assert store.read(found[1], tokens, 500) == bytes(range(256)) * (16 << 10)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_full_disk_evaluates_as_before_with_one_notice(random_model, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("qwenlocal.engine.diskstate.os.replace", full)
    folder = tmp_path / "states"
    messages = conversation("What does line 3 say?")
    plain, _ = answer(random_model, None, messages)
    with LlamaEngine(random_model, options(folder)) as engine:
        events = list(engine.stream(messages, GREEDY, keep=[instructions(messages)]))
        engine.model.states.flush()
        chat = messages + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
        later = list(engine.stream(chat, GREEDY, keep=[instructions(chat), chat]))
    notices = [e.text for e in events + later if isinstance(e, Notice) and "prompt states" in e.text]
    assert events[-1].tokens == plain.tokens
    assert len(notices) == 1 and "No space left on device" in notices[0], notices
    assert states(folder) == [] and list(folder.glob(".*.tmp")) == []


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_an_unwritable_folder_evaluates_as_before(random_model, tmp_path):
    blocked = tmp_path / "file-in-the-way"
    blocked.write_text("")
    messages = conversation("What does line 3 say?")
    done, notices = answer(random_model, blocked / "states", messages, keep=[instructions(messages)])
    plain, _ = answer(random_model, None, messages)
    assert done.tokens == plain.tokens
    assert len(notices) <= 1  # the write may finish after the answer: then no notice at all


def test_the_least_recently_used_go_first_at_the_cap(tmp_path):
    store = DiskStates(tmp_path, {"model": "m"}, limit=3 * (1 << 20) + 4096, min_tokens=1)
    blob = bytes(1 << 20)
    for n in (10, 20, 30):
        store.save(list(range(n)), blob)
        store.flush()
        os.utime(states(tmp_path)[-1], (n, n))  # written in this order
    assert store.read(store.longest(list(range(11)))[1], list(range(11)), 10) is not None  # 10 used now
    store.save(list(range(40)), blob)
    store.flush()
    kept = sorted(e.n_tokens for e in entries_in(tmp_path))
    assert kept == [10, 30, 40]  # 20: the least recently used


def test_short_prefixes_are_not_worth_a_file(tmp_path):
    store = DiskStates(tmp_path, {"model": "m"}, 1 << 30)
    store.save(list(range(MIN_TOKENS - 1)), bytes(1024))
    store.flush()
    assert states(tmp_path) == []


# -- qwenlocal cache -------------------------------------------------------------------------------


def test_cache_lists_and_clears(answer_model, isolated_home):
    done = run_in_process("run", "-m", str(answer_model), "--no-think", "q", input=REPORT.encode())
    assert done.returncode == 0, done.stderr
    listed = run_in_process("cache", "--json")
    [entry] = json.loads(listed.stdout)["states"]
    assert entry["model"] == answer_model.name and entry["tokens"] > 1300 and entry["bytes"] > 0
    text = run_in_process("cache").stdout.decode().splitlines()
    assert text[0].split() == ["model", "tokens", "size", "last", "used"]
    assert text[1].startswith(answer_model.name) and text[-1].startswith("1 state, ")
    cleared = run_in_process("cache", "clear")
    assert cleared.stderr.decode().startswith("qwenlocal: removed 1 prompt states (")
    assert json.loads(run_in_process("cache", "--json").stdout)["states"] == []


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("the state cache's tests use Linux's file modes and fork")
