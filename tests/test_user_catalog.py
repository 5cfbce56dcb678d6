"""A user's own models.toml in the config dir adds models and changes shipped ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing.cli import run as cli
from qwenlocal.testing.fakehub import FakeHub

from .conftest import ANSWER

FINE_TUNE = """
[models."qwen3.5-4b-ft"]
base = "qwen3.5-4b"
display = "Qwen3.5-4B fine-tune"
aliases = ["4b-ft"]
thinking_default = false

[models."qwen3.5-4b-ft".source]
repo = "someone/Qwen3.5-4B-ft-GGUF"
quants.Q4_K_M = {{ file = "ft-Q4_K_M.gguf", bytes = {size} }}

# another publisher's quant of a shipped model
[models."2b".source]
repo = "bartowski/Qwen_Qwen3.5-2B-GGUF"
quants.Q8_0 = {{ file = "Qwen_Qwen3.5-2B-Q8_0.gguf", bytes = 2080140384 }}
"""


def write_catalog(home: Path, text: str) -> Path:
    path = home / ".config" / "qwenlocal" / "models.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def hub(monkeypatch, answer_model):
    fake = FakeHub()
    fake.add("someone/Qwen3.5-4B-ft-GGUF", "ft-Q4_K_M.gguf", answer_model.read_bytes())
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.delenv("HF_HUB_OFFLINE")
    yield fake
    fake.stop()


def test_user_models_are_listed_as_the_users(isolated_home):
    write_catalog(isolated_home, FINE_TUNE.format(size=123456789))
    rows = {r["name"]: r for r in json.loads(cli("list", "--json").stdout)}
    ft = rows["4b-ft:q4_k_m"]
    assert ft["user"] and ft["repo"] == "someone/Qwen3.5-4B-ft-GGUF" and ft["bytes"] == 123456789
    assert rows["2b:q8_0"]["user"] and rows["2b:q8_0"]["repo"] == "bartowski/Qwen_Qwen3.5-2B-GGUF"
    assert "2b:q4_k_m" not in rows  # the user's source replaces the shipped one
    assert not rows["0.8b:q4_k_m"]["user"] and not rows["9b:q8_0"]["user"]
    table = cli("list").stdout.decode()
    assert "4b-ft:q4_k_m (user)" in table and "0.8b:q4_k_m (user)" not in table


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_user_model_is_pulled_and_run_by_name(hub, isolated_home, answer_model):
    size = answer_model.stat().st_size
    write_catalog(isolated_home, FINE_TUNE.format(size=size))
    pulled = cli("pull", "4b-ft")
    assert pulled.returncode == 0, pulled.stderr
    assert Path(pulled.stdout.decode().strip()).name == "ft-Q4_K_M.gguf" and hub.bytes_served == size
    answer = cli("run", "--model", "qwen3.5-4b-ft", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.decode() == ANSWER + "\n"  # thinking_default = false, from the user's entry


ENTRY = '[models."mine"]\nbase = "qwen3.5-4b"\n'
SOURCE = '[models."mine".source]\nrepo = "me/x-GGUF"\n'
M = '[models."mine"]'


@pytest.mark.parametrize(
    "text, words",
    [
        ("[models.mine\n", "cannot read the model catalog"),
        ("[model.mine]\n", "model: unknown table"),
        (ENTRY, M + ": missing 'source'"),
        ('[models."mine"]\nlayers = 24\n', M + ": missing 'params_b'"),
        ('[models."mine"]\nbase = "7b"\n', M + ": base '7b' is not a catalog model"),
        (ENTRY + "sise = 1\n", M + ": unknown key 'sise'"),
        (ENTRY + 'layers = "many"\n', M + ": 'layers' must be a whole number"),
        (
            ENTRY + SOURCE + 'quants.Q4_K_M = { file = "x.gguf", bytes = "2 GB" }\n',
            M + ".source, quants.Q4_K_M: needs bytes",
        ),
        (
            ENTRY + SOURCE + 'quants.Q4_K_M = { file = "x.bin", bytes = 1 }\n',
            M + ".source, quants.Q4_K_M: needs file",
        ),
        (
            ENTRY + '[models."mine".source]\nrepo = "x"\n',
            M + ".source: 'repo' must be a Hugging Face repo id",
        ),
        (
            ENTRY + 'aliases = ["4b"]\n' + SOURCE + 'quants.Q8_0 = { file = "x.gguf", bytes = 1 }\n',
            M + ": the name '4b' is taken by both",
        ),
        (
            ENTRY + 'sampling = "fast"\n' + SOURCE + 'quants.Q8_0 = { file = "x.gguf", bytes = 1 }\n',
            M + ": sampling 'fast'",
        ),
        ("[sampling.fast.thinking]\ntemperature = 1\n", "[sampling.fast.thinking]: needs exactly"),
    ],
)
def test_a_bad_user_catalog_is_one_line_naming_the_file_and_entry(isolated_home, text, words):
    path = write_catalog(isolated_home, text)
    for args in (["list"], ["run", "-m", "4b", "hi"], ["pull", "2b"]):
        result = cli(*args)
        err = result.stderr.decode()
        assert result.returncode == ExitCode.USAGE, err
        assert str(path) in err and words in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1  # the error and its hint, on one line
