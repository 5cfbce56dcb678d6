"""`serve --keep-alive`: an idle model is unloaded (/health says "idle", the engine is closed, the
run-state file says so) and loaded again for the next request, which is answered as before; it is
never unloaded under an answer in flight. `qwenlocal ps` lists running servers from their run-state
files, and removes the files of servers that are gone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from qwenlocal.config import load_settings, parse_duration, run_dir
from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.server.residency import Residency
from qwenlocal.testing.cli import run as run_in_process
from qwenlocal.testing.server import serving, wait_until_ready
from tests.conftest import ANSWER
from tests.test_serve_e2e import start

ASK = {"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": False}}


def until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def runstate(server) -> dict:
    return json.loads(server.runstate.path.read_text())


# -- the duration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("0", 0), ("30", 30), ("2.5", 2.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400),
     ("1.5h", 5400), (" 2D ", 172800), ("500ms", 0.5), (90, 90), (0.25, 0.25)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5 m", "5 minutes", "-1", "-5m", "1x", "5m-", "inf", "nan", True])
def test_bad_durations(text):
    with pytest.raises((ValueError, TypeError)):
        parse_duration(text)


def test_keep_alive_from_each_layer(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('keep_alive = "10m"\n')
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    assert load_settings({}, env={}).keep_alive == 600
    assert load_settings({}, env={"QWENLOCAL_KEEP_ALIVE": "45s"}).keep_alive == 45
    assert load_settings({"keep_alive": "1h"}, env={"QWENLOCAL_KEEP_ALIVE": "45s"}).keep_alive == 3600
    config.write_text("keep_alive = 90\n")
    assert load_settings({}, env={}).keep_alive == 90
    config.write_text("keep_alive = true\n")
    with pytest.raises(QwenlocalError) as error:
        load_settings({}, env={})
    assert error.value.code == ExitCode.USAGE and "'keep_alive'" in error.value.message
    config.unlink()
    with pytest.raises(QwenlocalError) as error:
        load_settings({}, env={"QWENLOCAL_KEEP_ALIVE": "soon"})
    assert "QWENLOCAL_KEEP_ALIVE" in error.value.message


def test_a_bad_keep_alive_is_a_usage_error(answer_model):
    result = run_in_process("serve", "-m", str(answer_model), "--keep-alive", "5 minutes")
    assert result.returncode == ExitCode.USAGE and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "invalid value '5 minutes' for --keep-alive" in lines[0]
    assert "30s, 5m" in lines[0]


# -- unloading and loading again ------------------------------------------------------------------


def ask(server, **extra) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json={**ASK, **extra}, timeout=120)


def health(server) -> httpx.Response:
    return httpx.get(f"{server.url}/health", timeout=10)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_an_idle_model_is_unloaded_and_loaded_again_for_the_next_request(answer_model):
    with serving(answer_model, keep_alive=1.0) as server:
        first = ask(server)
        assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"] == ANSWER
        engine = server.state.loaded.engine
        until(lambda: runstate(server)["requests"] == 1)
        assert runstate(server)["loaded"] is True and runstate(server)["keep_alive"] == 1.0

        idle = until(lambda: (r := health(server)).json()["status"] == "idle" and r)
        assert idle.status_code == 200 and server.state.loaded is None
        assert idle.json()["qwenlocal"]["n_ctx"] == 2048  # clients still learn its context
        state = until(lambda: (r := runstate(server))["state"] == "idle" and r)  # written once closed
        assert engine.model.model is None  # closed: its memory given back
        assert state["loaded"] is False and state["state"] == "idle" and state["idle_since"]

        again = ask(server)  # waits for the load: no 503
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == ANSWER
        assert health(server).json()["status"] == "ok" and server.state.loaded.engine is not engine
        until(lambda: runstate(server)["requests"] == 2)
        assert runstate(server)["loaded"] is True and runstate(server)["loaded_since"]
        # requests that need no model (the list, /health) neither load it nor keep it loaded
        until(lambda: health(server).json()["status"] == "idle")
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
        time.sleep(0.3)
        assert server.state.loaded is None
        # requests that come together while it is unloaded share one load
        loads, reopen = [], server.state.residency.reopen
        server.state.residency.reopen = lambda: loads.append(1) or reopen()
        answers: list = []
        threads = [threading.Thread(target=lambda: answers.append(ask(server))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [ANSWER] * 3
        assert loads == [1]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_without_the_key_an_idle_model_is_not_loaded(answer_model):
    with serving(answer_model, keep_alive=0.5, api_key="sesame") as server:
        until(lambda: health(server).json()["status"] == "idle")
        refused = ask(server)
        assert refused.status_code == 401 and server.state.loaded is None
        assert server.runstate.fields["requests"] == 0  # not served
        keyed = httpx.post(
            f"{server.url}/v1/chat/completions",
            json=ASK,
            headers={"Authorization": "Bearer sesame"},
            timeout=120,
        )
        assert keyed.status_code == 200 and server.state.loaded is not None
        assert server.runstate.fields["requests"] == 1


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_never_unloaded_under_an_answer(endless_model):
    """A streamed answer that takes several times keep_alive, with the idle check run often: the
    model is closed only after the generation ended, and the answer is whole."""
    with serving(endless_model, keep_alive=0.2) as server:
        server.state.residency.tick = 0.05
        engine = server.state.loaded.engine
        times: dict[str, float] = {}
        statuses = set()  # the server's, at every event of the generation
        stream, close = engine.stream, engine.close

        def timed_stream(*args, **kwargs):
            times["started"] = time.monotonic()
            for event in stream(*args, **kwargs):
                statuses.add(server.state.status())
                time.sleep(0.02)  # a slow model, whatever this machine's speed
                yield event
            times["ended"] = time.monotonic()

        def timed_close():
            times["closed"] = time.monotonic()
            close()

        engine.stream, engine.close = timed_stream, timed_close
        body = {**ASK, "max_tokens": 40, "stream": True, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
            pieces = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        assert times["ended"] - times["started"] > 2 * 0.2 and statuses == {"ok"}
        assert not any("error" in piece for piece in pieces)
        assert pieces[-1]["usage"]["completion_tokens"] == 40
        assert pieces[-2]["choices"][0]["finish_reason"] == "length"
        until(lambda: runstate(server)["state"] == "idle")
        assert times["closed"] - times["ended"] >= 0.2 and engine.model.model is None


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_generation_in_the_worker_keeps_it_loaded(answer_model):
    """Even with no request in flight (a client gone, its generation ending), a job in the worker
    keeps the model."""
    with serving(answer_model, keep_alive=0.3) as server:
        residency = server.state.residency
        residency.last -= 10
        server.state.worker.active += 1  # as a submitted job does
        try:
            time.sleep(1.5)
            assert server.state.loaded is not None and not residency.idle()
        finally:
            server.state.worker.active -= 1
        until(lambda: server.state.loaded is None)


def test_idle_time_counts_from_the_end_of_a_long_load():
    """A load that takes longer than keep_alive does not end in an unload at the first tick."""

    async def scenario() -> bool:
        state = SimpleNamespace(loaded=None, worker=SimpleNamespace(active=0))
        residency = Residency(state, keep_alive=0.2, reopen=lambda: None)
        residency.tick = 0.01
        loading = asyncio.get_running_loop().create_future()
        watch = asyncio.create_task(residency.watch(loading))
        await asyncio.sleep(0.5)
        state.loaded = "a model"
        loading.set_result(None)
        await asyncio.sleep(0.05)
        kept = state.loaded is not None and not residency.idle()
        watch.cancel()
        return kept

    assert asyncio.run(scenario())


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_keep_alive_0_never_unloads(answer_model):
    with serving(answer_model) as server:
        server.state.residency.last -= 3600
        time.sleep(1.5)
        assert health(server).json()["status"] == "ok" and runstate(server)["keep_alive"] == 0


# -- qwenlocal ps --------------------------------------------------------------------------------


def ps(cli, *args: str) -> tuple[str, str]:
    result = cli("ps", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode(), result.stderr.decode()


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_ps_lists_a_running_server_until_it_stops(cli, answer_model):
    server, url = start("-m", str(answer_model), "--port", "0", "--ctx", "2048", "--keep-alive", "5m")
    try:
        wait_until_ready(url)
        files = until(lambda: list(run_dir().glob("*.json")))
        assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
        until(lambda: json.loads(files[0].read_text())["loaded"])
        out, _ = ps(cli, "--json")
        [listed] = json.loads(out)
        assert listed["pid"] == server.pid and listed["url"] == url
        assert listed["model"] == answer_model.name and listed["file"] == answer_model.name
        assert listed["state"] == "loaded" and listed["loaded"] is True and listed["keep_alive"] == 300
        assert listed["rss"] > 10 << 20 and listed["requests"] == 0
        table, err = ps(cli)
        header, line = table.splitlines()
        assert header.split() == ["PID", "ADDRESS", "MODEL", "MEMORY", "STATE", "SINCE", "REQUESTS"]
        assert line.split()[:3] == [str(server.pid), url, answer_model.name]
        assert " MiB  loaded  " in line and err == ""
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert server.returncode == 0
    assert list(run_dir().iterdir()) == []
    out, err = ps(cli, "--json")
    assert out == "[]\n" and err == "qwenlocal: no qwenlocal servers running\n"


def test_ps_removes_the_files_of_servers_that_are_gone(cli):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is free now
    folder = run_dir()
    folder.mkdir(parents=True)
    fields = {"pid": gone.pid, "url": "http://127.0.0.1:1", "model": "x", "started_at": time.time()}
    (folder / f"{gone.pid}-1.json").write_text(json.dumps(fields))
    # a live pid (this process) that started after the file was written: the pid was reused
    reused = {**fields, "pid": os.getpid(), "started_at": time.time() - 10 * 86400}
    (folder / f"{os.getpid()}-2.json").write_text(json.dumps(reused))
    (folder / "broken.json").write_text("{")
    out, err = ps(cli)
    assert out == "" and err == "qwenlocal: no qwenlocal servers running\n"
    assert list(folder.iterdir()) == []
