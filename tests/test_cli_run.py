"""`qwenlocal run` as a shell user or a script would use it: in-process on a terminal of buffers,
and in a subprocess for one end-to-end path and what only a process has (its stdin pipe, signals,
Python's own traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing.cli import run as run_in_process

from .conftest import ANSWER, REASONING, qwenlocal


@pytest.fixture
def cli():
    """The CLI in-process (conftest's `cli` runs a subprocess)."""
    return run_in_process


def no_traceback(result) -> None:
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1  # one line: message and hint


def test_answer_alone_on_stdout(answer_model):
    result = qwenlocal("run", "--model", str(answer_model), "--no-think", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == ANSWER + "\n"
    assert result.stderr == b""


def test_reasoning_is_hidden_in_a_pipe_unless_asked_for(cli, answer_model):
    hidden = cli("run", "-m", str(answer_model), "--think", "hello")
    assert hidden.stdout.decode() == ANSWER + "\n" and REASONING.encode() not in hidden.stderr
    shown = cli("run", "-m", str(answer_model), "--think", "--show-reasoning", "hello")
    assert shown.stdout.decode() == ANSWER + "\n"
    assert REASONING in shown.stderr.decode()


def test_stdin_is_the_material_and_the_argument_the_instruction(cli, answer_model):
    result = cli("run", "-m", str(answer_model), "--json", "summarize", input=b"my notes\nline two\n")
    data = json.loads(result.stdout)
    assert data["answer"] == ANSWER
    # the user turn holds the notes and then the instruction; 2 lines of notes => more tokens
    alone = json.loads(cli("run", "-m", str(answer_model), "--json", "summarize").stdout)
    assert data["stats"]["prompt_tokens"] > alone["stats"]["prompt_tokens"]


def test_stdin_alone_is_the_prompt(cli, answer_model):
    result = cli("run", "-m", str(answer_model), input=b"what is this?")
    assert result.returncode == 0 and result.stdout.decode() == ANSWER + "\n"


def test_json_is_one_object_with_answer_reasoning_model_and_stats(cli, answer_model):
    result = cli("run", "-m", str(answer_model), "--think", "--json", "hello")
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["answer"] == ANSWER and data["reasoning"] == REASONING
    assert data["model"].endswith("answer.gguf") and data["finish"] == "stop"
    for key in ("prompt_tokens", "generated_tokens", "ttft_s", "generate_tps", "load_s", "n_ctx"):
        assert key in data["stats"]


def test_verbose_prints_stats_on_stderr_only(cli, answer_model):
    result = cli("run", "-m", str(answer_model), "--verbose", "hello")
    assert result.stdout.decode() == ANSWER + "\n"
    assert "tok/s" in result.stderr.decode() and "context" in result.stderr.decode()


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_settings_from_environment_and_config_file(cli, answer_model, isolated_home):
    env = {"QWENLOCAL_MODEL": str(answer_model), "QWENLOCAL_JSON": "1"}
    data = json.loads(cli("run", "hello", env=env).stdout)
    assert data["answer"] == ANSWER
    config = isolated_home / "qwenlocal.toml"
    config.write_text(f'model = "{answer_model}"\nmax_tokens = 2\n')
    result = cli("run", "--json", "hello", env={"QWENLOCAL_CONFIG": str(config)})
    assert json.loads(result.stdout)["stats"]["generated_tokens"] == 2
    # a flag beats the file
    result = cli("run", "--json", "--max-tokens", "4", "hi", env={"QWENLOCAL_CONFIG": str(config)})
    assert json.loads(result.stdout)["stats"]["generated_tokens"] == 4


def test_an_open_stdin_without_data_does_not_hang(answer_model):
    """`cmd | qwenlocal run ...` where cmd keeps the pipe open and sends nothing."""
    env = {**os.environ, "QWENLOCAL_STDIN_TIMEOUT": "0.5"}
    started = time.monotonic()
    with subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE) as writer:
        result = subprocess.run(
            [sys.executable, "-m", "qwenlocal", "run", "-m", str(answer_model), "hello"],
            stdin=writer.stdout,
            capture_output=True,
            env=env,
            timeout=60,
        )
        writer.kill()
    assert time.monotonic() - started < 25
    assert result.returncode == 0 and result.stdout.decode() == ANSWER + "\n"
    assert "sent nothing" in result.stderr.decode()


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_slow_stdin_is_waited_for(answer_model):
    env = {**os.environ, "QWENLOCAL_STDIN_TIMEOUT": "5"}
    writer = subprocess.Popen(["sh", "-c", "sleep 1; echo late notes"], stdout=subprocess.PIPE)
    result = subprocess.run(
        [sys.executable, "-m", "qwenlocal", "run", "-m", str(answer_model), "--json", "sum"],
        stdin=writer.stdout,
        capture_output=True,
        env=env,
        timeout=60,
    )
    writer.wait()
    assert result.returncode == 0 and b"sent nothing" not in result.stderr


@pytest.mark.parametrize(
    "args, stdin, code, words",
    [
        (["run", "-m", "7b", "hi"], b"", ExitCode.UNKNOWN_MODEL, "valid models: 0.8b, 2b, 4b, 9b"),
        (["run", "-m", "4b:q3_x", "hi"], b"", ExitCode.UNKNOWN_MODEL, "q4_k_m"),
        (["run", "-m", "/nonexistent/model.gguf", "hi"], b"", ExitCode.MODEL_FILE, "not found"),
        (["run", "-m", "{model}"], b"", ExitCode.BAD_INPUT, "empty"),
        (["run", "-m", "{model}", "hi"], b"\x00\x01\x02binary\xff", ExitCode.BAD_INPUT, "binary"),
        (["run", "-m", "{model}", "hi"], b"caf\xe9 latin-1", ExitCode.BAD_INPUT, "UTF-8"),
        (
            ["run", "-m", "{model}", "--ctx", "256", "x"],
            b"word " * 300,
            ExitCode.CONTEXT_OVERFLOW,
            "context holds",
        ),
        (["run", "-m", "2b", "hi"], b"", ExitCode.NOT_DOWNLOADED, "qwenlocal pull 2b:q"),
        (["run", "-m", "", "hi"], b"", ExitCode.UNKNOWN_MODEL, "unknown model ''"),
        (["run", "-m", "{model}", "--temperature", "hot", "hi"], b"", ExitCode.USAGE, "--temperature"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(cli, answer_model, args, stdin, code, words):
    args = [a.replace("{model}", str(answer_model)) for a in args]
    result = cli(*args, input=stdin)
    assert result.returncode == code, result.stderr
    assert words in result.stderr.decode()
    assert result.stdout == b""
    no_traceback(result)  # a flag Click refuses too: README promises one line for every failure
    assert result.stderr.decode().startswith("qwenlocal: error:") and "hint:" in result.stderr.decode()


def test_corrupt_model_file(cli, tmp_path, answer_model):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(answer_model.read_bytes()[:5000])
    result = cli("run", "-m", str(bad), "hi")
    assert result.returncode == ExitCode.MODEL_FILE
    no_traceback(result)


def test_debug_shows_the_traceback():
    result = qwenlocal("run", "-m", "7b", "hi", env={"QWENLOCAL_DEBUG": "1"})
    assert b"Traceback" in result.stderr and result.returncode != 0


def _interrupt_after_output(args, min_bytes=200):
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenlocal", "run", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = b""
    while len(seen) < min_bytes:  # the answer is streaming: interrupt it mid-way
        chunk = proc.stdout.read1(4096)
        assert chunk, proc.stderr.read()
        seen += chunk
    proc.send_signal(2)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, seen + out, err


def test_ctrl_c_keeps_the_partial_answer_and_exits_130(endless_model):
    code, out, err = _interrupt_after_output(["-m", str(endless_model), "--no-think", "go"])
    assert code == ExitCode.INTERRUPTED
    assert out.startswith(b"and on and on,") and out.endswith(b"\n")
    assert b"Traceback" not in err and b"interrupted" in err


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_ctrl_c_in_json_mode_still_prints_one_object(endless_model):
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenlocal", "run", "-m", str(endless_model), "--no-think", "--json", "go"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(5)  # loading takes well under a second; then it talks until interrupted
    proc.send_signal(2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    data = json.loads(out)
    assert data["finish"] == "interrupted" and data["answer"].startswith("and on")
    assert ("and on and on," * 100_000).startswith(data["answer"])


def test_help_and_version(cli):
    assert cli("--help").returncode == 0
    assert b"run" in cli("--help").stdout
    assert cli("--version").stdout.startswith(b"qwenlocal ")
