"""Fixtures: GGUFs of the real qwen35 architecture written by the suite, and an isolated home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwenlocal.testing import ggufs, vocab

# A shell starts background jobs with SIGINT ignored, and children inherit that: then the Ctrl-C
# tests would see no Ctrl-C at all. A Python handler here is reset to the default in every child.
signal.signal(signal.SIGINT, signal.default_int_handler)

ANSWER = (
    "Hello **world**!\n\n"
    "```python\ndef f():\n" + " " * 40 + "return 1\n```\n\n"
    "====================================\nThe end."
)
REASONING = "The user says hi. I should greet them back."
LONG_REASONING = " ".join(f"step{i}" for i in range(150))


@pytest.fixture(scope="session", autouse=True)
def real_vocabulary():
    """Qwen3.5's tokenizer data for the GGUFs, read (or built once) from the real user cache dir
    before the tests below isolate the home."""
    return vocab.vocabulary()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def answer_model(models_dir) -> Path:
    """Replies ANSWER (markdown, a 39-space token, a long rule) in both modes."""
    return ggufs.write_scripted(models_dir / "answer.gguf", ggufs.think_reply(REASONING, ANSWER))


@pytest.fixture(scope="session")
def long_think_model(models_dir) -> Path:
    """Thinks for 150 steps before answering: the reasoning budget must cut it short."""
    return ggufs.write_scripted(models_dir / "long.gguf", ggufs.think_reply(LONG_REASONING, "Done."))


@pytest.fixture(scope="session")
def endless_model(models_dir) -> Path:
    """Thinks forever, and (without thinking) talks forever: for budgets and Ctrl-C."""
    replies = {"\n": "Wait, let me reconsider the question once more.", "\n\n": "and on and on,"}
    return ggufs.write_scripted(models_dir / "endless.gguf", replies, loops=("\n", "\n\n"))


@pytest.fixture(scope="session")
def random_model(models_dir) -> Path:
    return ggufs.write_random(models_dir / "random.gguf")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own home, config, data dir and Hugging Face cache."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("QWENLOCAL_", "HF_", "HUGGINGFACE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    (home / "run").mkdir(mode=0o700)  # run-state files of servers (`qwenlocal ps`)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return home


def qwenlocal(
    *args: str, input: bytes | None = b"", env: dict | None = None, timeout: float = 120, stdin=None
):
    """Run the real CLI in a subprocess, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "qwenlocal", *args],
        input=input if stdin is None else None,
        stdin=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return qwenlocal
