"""`qwenlocal serve` as a process, as a user starts it: `qwenlocal run` and `qwenlocal chat` answer
through it (with --server and found on its own), --no-server loads the model itself, SIGTERM stops
it cleanly (exit 0, "stopped"; test_serve_guard.py stops one mid-answer), and serving off loopback
without a key is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing.server import wait_until_ready
from tests.conftest import ANSWER


def start(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "qwenlocal", "serve", *args], stderr=subprocess.PIPE, env=dict(os.environ)
    )
    first = process.stderr.readline().decode()
    url = re.search(r"on (http://\S+)/v1", first)
    assert url, first
    return process, url[1]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_run_answers_through_a_running_server(cli, answer_model, long_think_model):
    server, url = start("-m", str(answer_model), "--port", "0", "--ctx", "2048", "--no-think")
    try:
        health = wait_until_ready(url)
        assert health["model"] == answer_model.name and "path" not in health["qwenlocal"]
        result = cli("run", "-m", str(answer_model), "--no-think", "--server", url, "hi")
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == ANSWER + "\n"
        # --json says which answered (the default port, where a server is found without --server,
        # is left alone here: it may be in use on this machine)
        named = cli("run", "-m", str(answer_model), "--no-think", "--server", url, "--json", "hi")
        payload = json.loads(named.stdout)
        assert payload["answer"] == ANSWER and payload["model"].endswith("(server)")
        assert payload["stats"]["load_s"] == 0 and payload["stats"]["generated_tokens"] > 0
        # a server for another file is not used for this one
        other = cli("run", "-m", str(long_think_model), "--server", url, "hi")
        assert other.returncode == ExitCode.ERROR
        assert f"serves another model file ({answer_model.name})" in other.stderr.decode()
        # --no-server: loaded here
        local = cli("run", "-m", str(answer_model), "--no-think", "--no-server", "--json", "hi")
        assert local.returncode == 0 and not json.loads(local.stdout)["model"].endswith("(server)")
        # a piped chat, turn after turn, answered by the server (test_serve_chat.py checks in-process
        # that nothing is loaded here)
        args = ("chat", "-m", str(answer_model), "--no-think", "--server", url, "--json")
        talk = cli(*args, input=b"first\nsecond\n")
        assert talk.returncode == 0, talk.stderr
        answers = [json.loads(line) for line in talk.stdout.decode().splitlines()]
        assert [a["answer"] for a in answers] == [ANSWER, ANSWER]
        assert answers[1]["model"].endswith("(server)") and answers[1]["stats"]["load_s"] == 0
        assert answers[1]["stats"]["reused_tokens"] > 0  # the server went on from the first turn
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0  # SIGTERM is how a server is stopped: not a failure
    assert "Traceback" not in err.decode() and err.decode().endswith("qwenlocal: stopped\n")


def test_serving_off_loopback_needs_a_key(cli, answer_model):
    result = cli("serve", "-m", str(answer_model), "--host", "0.0.0.0")
    assert result.returncode == ExitCode.USAGE
    assert "--api-key" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_a_port_in_use_is_one_line(cli, answer_model):
    server, url = start("-m", str(answer_model), "--port", "0", "--ctx", "2048")
    try:
        port = url.rsplit(":", 1)[1]
        result = cli("serve", "-m", str(answer_model), "--port", port)
        assert result.returncode == ExitCode.USAGE
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
