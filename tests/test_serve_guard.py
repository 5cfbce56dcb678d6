"""`qwenlocal serve` against what a hostile web page, a rebound DNS name or a careless client sends:
cross-site posts and CORS preflights (Origin), DNS rebinding (Host), bodies that are not JSON,
JSON nested too deep, bad tool schemas, non-finite and out-of-range numbers; /health without the
model file's path; and a SIGTERM in the middle of an answer, which still ends it properly.
In-process against the real server, but for the SIGTERM of a real `qwenlocal serve` process."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from qwenlocal.engine.remote import find
from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.server.access import Access
from qwenlocal.testing import ggufs
from qwenlocal.testing.cli import run as run_in_process
from qwenlocal.testing.server import serving, wait_until_ready
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import ANSWER
from tests.test_serve_e2e import start

HI = [{"role": "user", "content": "hi"}]
ASK = {"model": "any", "messages": HI, "chat_template_kwargs": {"enable_thinking": False}, "max_tokens": 4}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(answer_model):
    allowed = dict(allow_origins=("https://ui.example",), allow_hosts=("my-box.local",))
    with serving(answer_model, **allowed) as running:
        yield running


def post(server, body: object, headers: dict | None = None, path: str = "/v1/chat/completions"):
    """`body` as JSON text (NaN and Infinity as Python writes them), with these headers."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content, headers={**JSON, **(headers or {})}, timeout=60)


def refused(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    for word in words:
        assert word in error["message"]
    return error


# -- Origin: cross-site requests ----------------------------------------------------------------


def test_a_simple_cross_site_post_is_refused(server):
    """A page on the web may post text/plain without asking the browser first: it gets nothing."""
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    refused(post(server, ASK, evil), 403, "http://evil.example", "--allow-origin")
    refused(post(server, ASK, {"Origin": "http://evil.example"}), 403, "--allow-origin")  # JSON too
    models = httpx.get(f"{server.url}/v1/models", headers={"Origin": "http://evil.example"})
    refused(models, 403, "--allow-origin")
    assert "access-control-allow-origin" not in models.headers
    refused(post(server, ASK, {"Origin": "null"}), 403)  # a sandboxed frame or a file


def test_a_body_that_is_not_sent_as_json_is_415(server):
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        refused(post(server, ASK, {"Content-Type": kind}), 415, "Content-Type: application/json", kind)
    bare = httpx.post(f"{server.url}/v1/chat/completions", content=json.dumps(ASK).encode())
    refused(bare, 415, "not none")
    charset = post(server, ASK, {"Content-Type": "Application/JSON; charset=utf-8"})
    assert charset.status_code == 200
    assert ANSWER.startswith(charset.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]", "https://ui.example"]
)
def test_loopback_and_allowed_pages_are_answered_with_cors(server, origin):
    answered = post(server, ASK, {"Origin": origin})
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == origin
    preflight = httpx.options(
        f"{server.url}/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"


def test_a_preflight_from_another_page_gets_no_cors(server):
    for origin in ("https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil.example"):
        preflight = httpx.options(
            f"{server.url}/v1/chat/completions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        refused(preflight, 403, origin)
        assert not any(name.startswith("access-control-") for name in preflight.headers)


# -- Host: DNS rebinding --------------------------------------------------------------------------


def test_a_rebound_host_name_is_refused(server):
    port = server.port
    refused(httpx.get(f"{server.url}/v1/models", headers={"Host": f"evil.example:{port}"}), 403)
    error = refused(post(server, ASK, {"Host": f"evil.example:{port}"}), 403, "evil.example", "--allow-host")
    assert error["code"] == "host_not_allowed"
    refused(httpx.get(f"{server.url}/health", headers={"Host": "127.0.0.1.evil.example"}), 403)
    local = (f"localhost:{port}", "localhost", f"127.0.0.1:{port}", "127.1.2.3", f"[::1]:{port}")
    for host in (*local, "my-box.local", "MY-BOX.local:80"):
        assert httpx.get(f"{server.url}/v1/models", headers={"Host": host}).status_code == 200, host


def test_off_loopback_any_host_is_answered_and_values_are_checked():
    anywhere = Access.of("0.0.0.0", hosts=["ignored.example"])
    assert anywhere.hosts is None and anywhere.host_allowed("evil.example:80")
    assert not anywhere.origin_allowed("http://evil.example")  # pages are still checked
    local = Access.of("::1", ["http://a.example, https://b.example:8443/"], ["box.local,Other.Example"])
    assert local.origins == {"http://a.example", "https://b.example:8443"}
    assert local.hosts == {"box.local", "other.example", "::1"}
    assert local.host_allowed("OTHER.example:1234") and not local.host_allowed("third.example")
    assert Access.of("127.0.0.1", ["*"]).origin_allowed("https://anything.example")
    for origins, hosts in ((["ui.example"], []), (["http://ui.example/app"], []), ([], ["http://box"])):
        with pytest.raises(QwenlocalError) as error:
            Access.of("127.0.0.1", origins, hosts)
        assert error.value.code == ExitCode.USAGE


def test_the_flags_and_the_environment_reach_the_server(answer_model, monkeypatch):
    seen = []

    class Recorded:
        def __init__(self, *args) -> None:
            seen.append(args[-1])

        def run(self) -> None:
            pass

    monkeypatch.setattr("qwenlocal.server.main.Server", Recorded)
    env = {"QWENLOCAL_ALLOW_ORIGIN": "http://a.example,http://b.example", "QWENLOCAL_ALLOW_HOST": "box.local"}
    result = run_in_process("serve", "-m", str(answer_model), env=env)
    assert result.returncode == 0, result.stderr
    flags = ("--allow-origin", "http://c.example", "--allow-origin", "http://d.example")
    flags += ("--allow-host", "x.lan")
    assert run_in_process("serve", "-m", str(answer_model), *flags).returncode == 0
    assert seen[0].origins == {"http://a.example", "http://b.example"} and "box.local" in seen[0].hosts
    assert seen[1].origins == {"http://c.example", "http://d.example"} and "x.lan" in seen[1].hosts
    bad = run_in_process("serve", "-m", str(answer_model), "--allow-origin", "evil.example")
    assert bad.returncode == ExitCode.USAGE and "invalid --allow-origin 'evil.example'" in bad.stderr.decode()


# -- /health: the file, not its path -------------------------------------------------------------


def test_health_names_the_model_not_its_path(server, answer_model, models_dir, tmp_path):
    health = httpx.get(f"{server.url}/health")
    body = health.json()
    assert body["status"] == "ok" and body["model"] == answer_model.name
    assert str(models_dir) not in health.text and "/" not in health.text
    models = httpx.get(f"{server.url}/v1/models")
    assert str(models_dir) not in models.text and "/" not in models.text
    # a client still knows whether the server has its file: through any path to it, and not another
    link = tmp_path / "linked.gguf"
    link.symlink_to(answer_model)
    assert find(server.url, answer_model) is not None and find(server.url, link) is not None
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(answer_model.read_bytes())
    with pytest.raises(QwenlocalError, match=f"serves another model file \\({answer_model.name}\\)"):
        find(server.url, copy)


# -- malformed requests: 400 with the reason, never 500 -------------------------------------------


def test_json_nested_too_deeply_is_400(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    refused(post(server, deep), 400, "nested too deeply")
    refused(post(server, b'{"messages": ' + deep + b"}", path="/qwenlocal/prompt"), 400, "nested too deeply")


@pytest.mark.parametrize(
    ("parameters", "param"),
    [
        ("a string", "tools[0].function.parameters"),
        ([1, 2], "tools[0].function.parameters"),
        (5, "tools[0].function.parameters"),
        ({"properties": "city"}, "tools[0].function.parameters.properties"),
        ({"properties": ["city"]}, "tools[0].function.parameters.properties"),
        ({"properties": {"city": "string"}}, "tools[0].function.parameters.properties.city"),
        ({"properties": {"city": None}}, "tools[0].function.parameters.properties.city"),
    ],
)
def test_a_tool_schema_that_is_not_one_is_400(server, parameters, param):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
    error = refused(post(server, {**ASK, "tools": [tool]}), 400, "tools[0]")
    assert error["param"] == param
    prompt = post(server, {"messages": HI, "tools": [tool]}, path="/qwenlocal/prompt")
    assert refused(prompt, 400)["param"] == param


def test_earlier_tool_calls_that_are_not_an_array_are_400(server):
    said = {"role": "assistant", "content": "", "tool_calls": {"function": {"name": "f"}}}
    error = refused(post(server, {**ASK, "messages": [*HI, said, *HI]}), 400, "must be an array")
    assert error["param"] == "messages[1].tool_calls"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_odd_but_readable_schemas_are_answered(models_dir):
    """Schemas the call parser cannot read a type from: the model's call is still answered, its
    values as text."""
    days = {"anyOf": [5, {"type": ["integer", {}]}], "enum": 3}
    odd = {"type": "object", "properties": {"city": {"oneOf": "x"}, "days": days}, "required": 7}
    model = ggufs.write_scripted(
        models_dir / "guard-call.gguf", {"\n\n": tool_call("get_weather", city="Paris", days=3)}
    )
    with serving(model) as running:
        for parameters in (None, {}, odd):
            tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
            answer = post(running, {**ASK, "max_tokens": None, "tools": [tool]})
            assert answer.status_code == 200, answer.text
            call = answer.json()["choices"][0]["message"]["tool_calls"][0]["function"]
            assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"] == "Paris"


NUMBERS = {  # field: values out of its range
    "temperature": [-0.1, 2.5],
    "top_p": [-0.1, 1.5],
    "min_p": [-1, 2],
    "top_k": [-1, 2**31, 1e300],
    "presence_penalty": [-3, 3],
    "frequency_penalty": [-3, 3],
    "repeat_penalty": [0, -1],
    "max_tokens": [0, -5, 2**31, 1e300, 10**400],
    "max_completion_tokens": [0, 1e300],
    "seed": [2**64, -(2**64), 1e300],
    "think_budget": [-1, 2**31, 1e300],
}
NOT_FINITE = ["NaN", "Infinity", "-Infinity"]
CASES = [
    pytest.param(name, value, id=f"{name}={str(value)[:12]}")
    for name, values in NUMBERS.items()
    for value in [*values, *NOT_FINITE]
]


@pytest.mark.parametrize(("name", "value"), CASES)
def test_numbers_out_of_range_or_not_finite_are_400(server, name, value):
    text = json.dumps({**ASK, name: 1}).replace(f'"{name}": 1', f'"{name}": {value}')
    error = refused(post(server, text.encode()), 400, name)
    assert error["param"] == name


# -- stopping with answers in flight ----------------------------------------------------------------


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_sigterm_ends_the_stream_in_flight_and_exits_cleanly(endless_model):
    process, url = start("-m", str(endless_model), "--port", "0", "--ctx", "2048", "--no-think")
    events = []
    try:
        wait_until_ready(url)
        body = {**ASK, "stream": True, "max_tokens": None}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                if len(events) == 5:
                    process.send_signal(signal.SIGTERM)  # it talks forever: stop the server meanwhile
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    err = err.decode()
    assert events[-1] == "[DONE]", events[-3:]
    last = json.loads(events[-2])
    assert last["error"]["code"] == "server_shutting_down" and last["error"]["type"] == "server_error"
    assert all("choices" in json.loads(e) for e in events[:-2])  # the answer up to it
    assert process.returncode == 0, err
    assert "Traceback" not in err and "CancelledError" not in err and "ERROR" not in err
    assert err.splitlines()[-1] == "qwenlocal: stopped"


def test_stopping_during_a_long_prompt_read_answers_at_once(answer_model):
    """The engine may be busy in one long llama_decode: the answer does not wait for it."""
    release = threading.Event()

    def reading_a_long_prompt(*args, **kwargs):
        release.wait(60)
        yield from ()

    with serving(answer_model) as running, ThreadPoolExecutor(1) as pool:
        running.state.loaded.engine.stream = reading_a_long_prompt
        asked = pool.submit(post, running, {**ASK, "stream": True})
        while not running.state.worker.active:
            time.sleep(0.01)
        running.stop()  # what SIGTERM does
        try:
            response = asked.result(timeout=2.5)  # before uvicorn's 3 s of grace are over
        finally:
            release.set()
    error = refused(response, 503, "shutting down")
    assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
