"""`qwenlocal serve` with real clients: the official `openai` package, raw HTTP (httpx) and curl,
against the real server (uvicorn, the app, the worker thread, llama.cpp) on loopback, on scripted
models whose greedy reply is known."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time

import httpx
import openai
import pytest

from qwenlocal.testing import ggufs
from qwenlocal.testing.server import serving
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import ANSWER, REASONING

HI = [{"role": "user", "content": "hi"}]
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server(answer_model):
    with serving(answer_model) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_streams_reasoning_and_answer_apart(client):
    stream = client.chat.completions.create(
        model="any",
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"chat_template_kwargs": {"enable_thinking": True}},
    )
    chunks = list(stream)
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == REASONING
    assert content == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # streamed, not at once
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details.reasoning_tokens > 0


def test_answers_whole_without_streaming(client):
    reply = client.chat.completions.create(model="any", messages=HI, extra_body=NO_THINK)
    message = reply.choices[0].message
    assert message.content == ANSWER and message.role == "assistant"
    assert not getattr(message, "reasoning_content", None)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")


def test_reasoning_effort_none_turns_thinking_off(client):
    reply = client.chat.completions.create(model="any", messages=HI, reasoning_effort="none")
    assert reply.choices[0].message.content == ANSWER
    assert not getattr(reply.choices[0].message, "reasoning_content", None)
    thinking = client.chat.completions.create(model="any", messages=HI, reasoning_effort="high")
    assert thinking.choices[0].message.reasoning_content == REASONING


def test_sampling_parameters_max_tokens_and_stop(client):
    common = dict(model="any", messages=HI, extra_body={**NO_THINK, "top_k": 20, "min_p": 0.0})
    sampled = client.chat.completions.create(
        **common, temperature=0.7, top_p=0.8, presence_penalty=1.5, frequency_penalty=0.1, seed=7
    )
    assert sampled.choices[0].message.content == ANSWER  # a scripted reply survives sampling
    short = client.chat.completions.create(**common, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert ANSWER.startswith(short.choices[0].message.content)
    stopped = client.chat.completions.create(**common, stop=["world"])
    assert stopped.choices[0].message.content == "Hello **"
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < sampled.usage.completion_tokens  # generation ended there


def test_models_and_health_name_the_file(client, server, answer_model):
    models = client.models.list().data
    assert [m.id for m in models] == [server.state.label]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok"
    assert health["model"] == answer_model.name and str(answer_model.parent) not in json.dumps(health)
    assert health["qwenlocal"]["n_ctx"] == 2048


def test_bad_requests_are_400_in_openai_shape(client, server):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="any", messages=[])
    assert error.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError, match="temperature must be between"):
        client.chat.completions.create(model="any", messages=HI, temperature=9)
    with pytest.raises(openai.BadRequestError, match="corrupt or truncated PNG"):
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": [image]}])
    headers = {"Content-Type": "application/json"}
    raw = httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json", headers=headers)
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{server.url}/v1/nothing").json()["error"]["type"] == "not_found_error"


def test_a_prompt_over_the_context_says_the_numbers(client):
    long = " ".join(f"word{i}" for i in range(3000))
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": long}])
    assert error.value.code == "context_length_exceeded"
    assert "but the context holds 2048" in error.value.message


def test_a_request_over_the_size_limit_is_413(server):
    server.state.max_body, limit = 1 << 20, server.state.max_body
    try:
        big = {"model": "any", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=big)
    finally:
        server.state.max_body = limit
    assert response.status_code == 413 and "limit of 1 MiB" in response.json()["error"]["message"]


def test_the_api_key_is_required_when_set(answer_model):
    with serving(answer_model, api_key="s3cret") as running:
        url = f"{running.url}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        keyed = openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0)
        reply = keyed.chat.completions.create(model="any", messages=HI, extra_body=NO_THINK)
        assert reply.choices[0].message.content == ANSWER
        assert httpx.get(f"{running.url}/health").status_code == 200  # health stays open


def test_503_while_the_model_is_not_loaded(answer_model):
    with serving(answer_model, ready=False) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as error:
            client.chat.completions.create(model="any", messages=HI)
        assert error.value.status_code == 503 and "loading" in error.value.message
        assert httpx.get(f"{running.url}/health").json()["status"] == "loading"


@pytest.fixture(scope="module")
def tool_model(models_dir):
    replies = {"\n\n": "Let me check. " + tool_call("get_weather", city="Paris", days=3)}
    return ggufs.write_scripted(models_dir / "weather.gguf", replies, after_tool={"\n\n": "It is sunny."})


def test_a_tool_call_streams_as_tool_calls(tool_model):
    with serving(tool_model) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "weather in Paris?"}]
        chunks = list(
            client.chat.completions.create(model="any", messages=messages, tools=[WEATHER], stream=True)
        )
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert "".join(d.content or "" for d in deltas) == "Let me check."
        calls = [call for d in deltas for call in d.tool_calls or ()]
        assert len(calls) == 1 and calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 3}  # typed by the schema
        assert calls[0].id.startswith("call_")
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

        # the client runs the tool and sends the result back, as OpenAI's clients do
        whole = client.chat.completions.create(model="any", messages=messages, tools=[WEATHER])
        call = whole.choices[0].message.tool_calls[0]
        assert whole.choices[0].finish_reason == "tool_calls"
        messages += [
            whole.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
        ]
        answer = client.chat.completions.create(model="any", messages=messages, tools=[WEATHER])
        assert answer.choices[0].message.content == "It is sunny."
        assert answer.choices[0].finish_reason == "stop"


def test_a_client_that_goes_away_stops_its_generation(endless_model):
    with serving(endless_model, max_queue=0) as running:
        engine = running.state.loaded.engine
        body = {"model": "any", "messages": HI, "stream": True, **NO_THINK}
        with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert [next(lines) for _ in range(6)]  # it talks (forever)
            # one generation at a time, and no queue: a second request is refused meanwhile
            busy = httpx.post(f"{running.url}/v1/chat/completions", json={**body, "stream": False})
            assert busy.status_code == 429 and busy.json()["error"]["type"] == "rate_limit_error"
        deadline = time.monotonic() + 60
        while running.state.worker.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.state.worker.active == 0
        assert len(engine.cache.live) < engine.n_ctx // 2  # stopped long before the context was full
        after = httpx.post(
            f"{running.url}/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4}
        )
        assert after.json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_two_clients_taking_turns_keep_their_conversations(answer_model):
    with serving(answer_model, cache_mib=256) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        stash = running.state.loaded.engine.cache.stash
        talks = {name: [{"role": "system", "content": f"You are {name}."}] for name in ("ann", "bob")}
        cached = {}
        for turn in range(3):
            for name, messages in talks.items():
                messages.append({"role": "user", "content": f"{name} asks question {turn} " + "pad " * 50})
                reply = client.chat.completions.create(model="any", messages=messages, extra_body=NO_THINK)
                messages.append({"role": "assistant", "content": reply.choices[0].message.content})
                cached[name, turn] = reply.usage.prompt_tokens_details.cached_tokens
        # from the second turn on, each conversation goes on from its own kept state, although the
        # other one was answered in between
        for name in talks:
            assert cached[name, 1] > 60 and cached[name, 2] > cached[name, 1]
        assert stash.restores >= 4 and stash.bytes <= 256 << 20


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streams_server_sent_events(server):
    body = json.dumps({"model": "any", "messages": HI, "stream": True, **NO_THINK})
    result = subprocess.run(
        [
            "curl",
            "-sN",
            f"{server.url}/v1/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ],
        capture_output=True,
        timeout=120,
    )
    events = [line[6:] for line in result.stdout.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_an_image_url_is_seen_through_the_projector(models_dir, tmp_path, answer_model):
    """image_url data URIs go through libmtmd like `run --image`; a bad image and a server
    without a projector are 400s that say why."""
    from qwenlocal.testing import projectors

    model = ggufs.write_scripted(models_dir / "serve-vision.gguf", {"\n\n": "A red square."})
    mmproj = projectors.write_projector(models_dir / "serve-mmproj.gguf")
    png = projectors.write_png(tmp_path / "red.png", 128, 128, (220, 20, 20)).read_bytes()

    def ask(client, data: bytes):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}]
        return client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": parts}], max_tokens=8, extra_body=NO_THINK
        )

    with serving(model, mmproj=mmproj) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        seen = ask(client, png)
        plain = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "What is it?"}],
            max_tokens=8,
            extra_body=NO_THINK,
        )
        assert seen.choices[0].message.content == "A red square."
        assert seen.usage.prompt_tokens > plain.usage.prompt_tokens + 4  # the image's positions
        with pytest.raises(openai.BadRequestError, match="corrupt or truncated PNG"):
            ask(client, png[: len(png) // 2])
    with serving(answer_model) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="without a vision projector"):
            ask(client, png)
