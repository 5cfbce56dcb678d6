"""Bad settings, flags, environments and files: each ends in one line and its exit code, never a
signal, a hang or an internal error (issue 15's hostile cases)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.testing.cli import run as run_in_process

from .conftest import ANSWER


@pytest.fixture
def cli():
    """The CLI in-process; `run_cli` below runs it in a subprocess, for what only a process has
    (signals, argv bytes, closed descriptors)."""
    return run_in_process


def one_line_error(result, code: ExitCode) -> str:
    """The process exited by itself with `code` and said why in the documented one line."""
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.startswith("qwenlocal: error: ") and "(hint: " in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def run_cli(*args, env=None, input=b"", **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "qwenlocal", *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kwargs,
    )


# -- settings (items 9, 10, 10b) --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, env, config",
    [
        (["--threads", "100000"], {}, ""),  # was SIGSEGV
        (["--ctx", "99999999999999999999"], {}, ""),  # wrapped n_ctx; the OOM killer ended it
        ([], {"QWENLOCAL_CTX": "1"}, ""),  # was GGML_ASSERT, exit 134
        ([], {}, "ctx = 20\n"),  # the same from the config file
    ],
)
def test_bad_settings_end_before_the_model_loads(random_model, tmp_path, args, env, config):
    path = tmp_path / "c.toml"
    path.write_text(config)
    env = {**env, "QWENLOCAL_CONFIG": str(path)}
    result = run_cli("run", "-m", str(random_model), "--max-tokens", "2", *args, "hi", env=env)
    assert "invalid value" in one_line_error(result, ExitCode.USAGE)


def test_more_threads_than_the_machine_can_use_are_capped_with_a_warning(cli, answer_model):
    """ggml's 512 is the setting's bound (a config file stays valid on every machine); the loader
    caps what this machine can use, since thousands of threads on a few cores look like a hang."""
    result = cli("run", "-m", str(answer_model), "--threads", "512", "--no-think", "hi")
    assert result.returncode == 0, result.stderr
    usable = 2 * (os.cpu_count() or 1)
    assert f"512 threads (command line) is more than this machine can use; using {usable}" in (
        result.stderr.decode()
    )
    assert result.stdout.decode() == ANSWER + "\n"


def test_the_smallest_context_runs(cli, answer_model):
    """llama.cpp cuts its batch to the context: the engine must not send a larger one."""
    result = cli("run", "-m", str(answer_model), "--ctx", "256", "--no-think", "hello " * 20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == ANSWER + "\n"


def tiny_machine():
    from qwenlocal.models.hardware import GiB, Hardware

    return Hardware(total_ram=2 * GiB, available_ram=GiB, cpu_threads=2, logical_cpus=2)


def test_a_context_that_cannot_fit_is_refused_before_loading(random_model):
    from qwenlocal.config import load_settings
    from qwenlocal.models.loader import plan

    settings = load_settings({"model": str(random_model), "ctx": 131072})
    with pytest.raises(QwenlocalError) as err:
        plan(settings, tiny_machine())
    assert err.value.code == ExitCode.DOES_NOT_FIT
    assert "131072-token context" in err.value.message and "GB" in err.value.message
    assert "--ctx" in err.value.hint


def test_a_catalog_model_with_a_context_too_large_is_refused_too():
    from qwenlocal.config import load_settings
    from qwenlocal.models.loader import plan

    with pytest.raises(QwenlocalError) as err:
        plan(load_settings({"model": "0.8b", "ctx": 262144}), tiny_machine())
    assert err.value.code == ExitCode.DOES_NOT_FIT and "free" in err.value.message


# -- names and files (items 11, 12, 14) --------------------------------------------------------


def test_an_empty_model_name_is_an_unknown_model():
    from qwenlocal.config import load_settings
    from qwenlocal.models.loader import plan
    from qwenlocal.models.store import target_quant

    settings = load_settings({"model": ""})
    with pytest.raises(QwenlocalError) as err:
        plan(settings, tiny_machine())
    assert err.value.code == ExitCode.UNKNOWN_MODEL and "valid models" in err.value.hint
    with pytest.raises(QwenlocalError) as err:
        target_quant("", settings)  # what `qwenlocal pull ''` pulls
    assert err.value.code == ExitCode.UNKNOWN_MODEL


def test_show_of_a_truncated_gguf_is_a_model_file_error(random_model, tmp_path):
    from qwenlocal.models.store import show

    data = random_model.read_bytes()
    for size in [*range(100, 16_000, 500), len(data) // 2]:  # in the metadata, in the tensors
        bad = tmp_path / f"cut{size}.gguf"
        bad.write_bytes(data[:size])
        with pytest.raises(QwenlocalError) as err:
            show(str(bad))
        assert err.value.code == ExitCode.MODEL_FILE and str(bad) in err.value.message


def saved_dir(home: Path) -> Path:
    folder = home / ".local/share/qwenlocal/conversations"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"messages": 5}',
        '{"messages": [{"role": "user"}]}',
        '{"messages": [{"role": "wizard", "content": "hi"}]}',
        '{"messages": [{"role": "user", "content": ["hi"]}]}',
        '{"title": 3}',
        '{"system": {"a": 1}}',
        '{"dropped": [7]}',
    ],
)
def test_malformed_conversation_files_are_bad_input(tmp_path, text):
    from qwenlocal.conversation import Conversation

    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(QwenlocalError) as err:
        Conversation.load(path)
    assert err.value.code == ExitCode.BAD_INPUT and str(path) in err.value.message


def test_a_damaged_conversation_is_skipped_with_a_warning(isolated_home, capsys):
    from qwenlocal.conversation import Conversation
    from qwenlocal.terminal import Terminal

    warn = Terminal().warn  # the core returns what it skipped; the command says so

    good = Conversation()
    good.add("user", "first question")
    damaged = saved_dir(isolated_home) / "zz-damaged.json"
    damaged.write_text('{"messages": 5}')
    os.utime(damaged, (time.time() + 60, time.time() + 60))  # the newest file
    assert [c.id for c in Conversation.saved(warn)] == [good.id]
    assert Conversation.find(None, warn).id == good.id  # --resume: the newest readable one
    assert Conversation.find("1", warn).id == good.id
    err = capsys.readouterr().err
    assert "skipped" in err and "zz-damaged.json" in err


def test_chat_list_skips_a_damaged_conversation(cli, isolated_home):
    from qwenlocal.conversation import Conversation

    Conversation().add("user", "kept question")
    (saved_dir(isolated_home) / "broken.json").write_text("[]")
    result = cli("chat", "--list")
    assert result.returncode == 0, result.stderr
    assert "kept question" in result.stdout.decode()
    assert "broken.json" in result.stderr.decode() and "skipped" in result.stderr.decode()


# -- the process's environment (items 15, 16, 17, 19) ------------------------------------------


def test_an_argument_that_is_not_utf8_is_bad_input(answer_model, isolated_home):
    result = run_cli("run", "-m", str(answer_model), b"caf\xe9 au lait")
    assert "not valid UTF-8" in one_line_error(result, ExitCode.BAD_INPUT)
    result = run_cli("chat", "-m", str(answer_model), "--system", b"caf\xe9", input=b"hi\n")
    one_line_error(result, ExitCode.BAD_INPUT)
    data = isolated_home / ".local/share/qwenlocal"
    assert not data.exists() or not [p for p in data.rglob("*") if p.is_file()]


def test_a_failed_save_leaves_no_temporary_file(isolated_home):
    from qwenlocal.conversation import Conversation

    conv = Conversation()
    conv.add("user", "fine")
    with pytest.raises(UnicodeEncodeError):
        conv.add("user", "caf\udce9")  # text Python made from bytes that are not UTF-8
    assert [p.name for p in saved_dir(isolated_home).iterdir()] == [f"{conv.id}.json"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/sys is Linux's")
def test_an_unwritable_data_folder_is_named(answer_model):
    folder = "/sys/qwenlocal-test"  # refused to everyone, root included
    env = {"XDG_DATA_HOME": folder}
    result = subprocess.run(
        [sys.executable, "-m", "qwenlocal", "chat", "-m", str(answer_model), "--no-think"],
        input=b"hello\n",
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )
    err = one_line_error(result, ExitCode.NOT_WRITABLE)
    assert folder in err and "XDG_DATA_HOME" in err


def test_a_closed_stdout_is_refused(answer_model):
    result = run_cli("run", "-m", str(answer_model), "hi", preexec_fn=lambda: os.close(1))
    assert "stdout is closed" in one_line_error(result, ExitCode.USAGE)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_sigterm_in_json_mode_still_prints_one_object(endless_model):
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenlocal", "run", "-m", str(endless_model), "--no-think", "--json", "go"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(5)  # loading takes well under a second; then it talks until stopped
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.TERMINATED, err
    data = json.loads(out)
    assert data["finish"] == "interrupted" and data["answer"].startswith("and on")
    assert err.decode().strip().splitlines()[-1] == "qwenlocal: terminated"


def test_a_bad_flag_is_one_line_too(cli):
    result = cli("run", "--temperature", "hot", "hi")
    err = one_line_error(result, ExitCode.USAGE)
    assert "--temperature" in err and "qwenlocal run --help" in err
    result = cli("run", "--no-such-flag")
    assert "--no-such-flag" in one_line_error(result, ExitCode.USAGE)
