"""`qwenlocal serve`'s Anthropic Messages API (/v1/messages) with the official `anthropic` client
and raw HTTP, against the real server on scripted models whose greedy reply is known: text,
thinking, streamed events, tool use, tool_choice, count_tokens, kept states, errors and the key."""

from __future__ import annotations

import base64
import json

import anthropic
import httpx
import pytest

from qwenlocal.testing import ggufs
from qwenlocal.testing.server import serving
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import ANSWER, REASONING

KEY = "s3cret"
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
THINK = {"type": "enabled", "budget_tokens": 1024}
SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}  # the client 2.17 has no parameters for them


@pytest.fixture(scope="module")
def server(answer_model):
    """With a key: every request below sends it as the client does, in `x-api-key`."""
    with serving(answer_model, api_key=KEY, cache_mib=64, threads=1) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def tool_client(models_dir):
    """A model that says "Let me check." and calls get_weather(Paris, 3); after the result,
    "It is sunny."."""
    replies = {"\n\n": "Let me check. " + tool_call("get_weather", city="Paris", days=3)}
    model = ggufs.write_scripted(
        models_dir / "anthropic-weather.gguf", replies, after_tool={"\n\n": "It is sunny."}
    )
    with serving(model, threads=1) as running:
        yield anthropic.Anthropic(base_url=running.url, api_key="unused", max_retries=0)


def sse(text: str) -> list[tuple[str, dict]]:
    """A stream's events, checking that each is `event: NAME` then `data: JSON` (the same type)."""
    events = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), frame
        body = json.loads(data[6:])
        assert body["type"] == name[7:]
        events.append((name[7:], body))
    return events


def test_a_message_without_thinking(client):
    message = client.messages.create(model="any", max_tokens=200, messages=HI)
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == ANSWER
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    usage = message.usage
    assert usage.output_tokens > 5 and usage.input_tokens + usage.cache_read_input_tokens > 5
    assert usage.cache_creation_input_tokens == 0


def test_system_sampling_max_tokens_and_stop_sequences(client):
    common = dict(model="any", messages=HI, system=[{"type": "text", "text": "Be kind."}])
    sampled = client.messages.create(**common, max_tokens=200, extra_body=SAMPLING)
    assert sampled.content[0].text == ANSWER  # a scripted reply survives sampling
    short = client.messages.create(**common, max_tokens=3)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    assert ANSWER.startswith(short.content[0].text)
    stopped = client.messages.create(**common, max_tokens=200, stop_sequences=["world"])
    assert stopped.content[0].text == "Hello **"
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "world"


def test_streamed_events_in_anthropic_order(server, client):
    body = {"model": "any", "max_tokens": 200, "messages": HI, "stream": True}
    response = httpx.post(f"{server.url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    names = [name for name, _ in events]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [body["delta"] for name, body in events if name == "content_block_delta"]
    assert len(deltas) > 3 and {d["type"] for d in deltas} == {"text_delta"}  # streamed, not at once
    assert "".join(d["text"] for d in deltas) == ANSWER
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    end = events[-2][1]
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["output_tokens"] > 5

    with client.messages.stream(model="any", max_tokens=200, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER and final.content[0].text == ANSWER and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == end["usage"]["output_tokens"]


def test_thinking_comes_as_thinking_blocks(client):
    message = client.messages.create(model="any", max_tokens=300, messages=HI, thinking=THINK)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == REASONING and message.content[0].signature
    assert message.content[1].text == ANSWER

    with client.messages.stream(model="any", max_tokens=300, messages=HI, thinking=THINK) as stream:
        events = list(stream)
        final = stream.get_final_message()
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert deltas.index("signature_delta") < deltas.index("text_delta")
    assert {"thinking_delta", "text_delta"} <= set(deltas)
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == REASONING and final.content[1].text == ANSWER
    # and sent back with the conversation, as clients do
    again = client.messages.create(
        model="any",
        max_tokens=300,
        thinking=THINK,
        messages=[*HI, {"role": "assistant", "content": final.content}, {"role": "user", "content": "more"}],
    )
    assert again.content[-1].text == ANSWER


def test_a_resent_conversation_reads_its_beginning_from_the_kept_state(client):
    messages = [{"role": "user", "content": "a question " + "pad " * 50}]
    first = client.messages.create(model="any", max_tokens=200, messages=messages)
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "and another one"},
    ]
    counted = client.messages.count_tokens(model="any", messages=messages).input_tokens
    second = client.messages.create(model="any", max_tokens=200, messages=messages)
    usage, before = second.usage, first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert usage.cache_read_input_tokens > 40 and usage.cache_creation_input_tokens == 0
    assert usage.input_tokens + usage.cache_read_input_tokens == counted
    assert usage.cache_read_input_tokens >= before - 8  # the first prompt was not read again


def test_count_tokens(client):
    plain = client.messages.count_tokens(model="any", messages=HI).input_tokens
    with_system = client.messages.count_tokens(model="any", messages=HI, system="You are terse.")
    with_tools = client.messages.count_tokens(model="any", messages=HI, tools=[WEATHER])
    assert 0 < plain < with_system.input_tokens < with_tools.input_tokens
    message = client.messages.create(model="any", max_tokens=2, messages=HI)
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == plain


def test_a_tool_use_round_trip(tool_client):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    with tool_client.messages.stream(
        model="any", max_tokens=200, messages=messages, tools=[WEATHER]
    ) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    json_deltas = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(json_deltas) == 1 and json.loads(json_deltas[0]) == {"city": "Paris", "days": 3}
    assert [b.type for b in streamed.content] == ["text", "tool_use"] and streamed.stop_reason == "tool_use"

    reply = tool_client.messages.create(model="any", max_tokens=200, messages=messages, tools=[WEATHER])
    assert [b.type for b in reply.content] == ["text", "tool_use"]
    text, use = reply.content
    assert text.text == "Let me check."
    assert use.name == "get_weather" and use.input == {"city": "Paris", "days": 3}  # typed by the schema
    assert use.id.startswith("toolu_") and reply.stop_reason == "tool_use"

    # the client runs the tool and sends the result back
    messages += [
        {"role": "assistant", "content": reply.content},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "sunny, 24C"}],
                }
            ],
        },
    ]
    answer = tool_client.messages.create(model="any", max_tokens=200, messages=messages, tools=[WEATHER])
    assert [b.type for b in answer.content] == ["text"] and answer.content[0].text == "It is sunny."
    assert answer.stop_reason == "end_turn"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_tool_choice(tool_client, client):
    common = dict(model="any", max_tokens=200, messages=HI, tools=[WEATHER], extra_body={"temperature": 0})
    for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"}):
        forced = tool_client.messages.create(**common, tool_choice=choice)
        # the grammar cuts the scripted "Let me check." before the call, so the script's values no
        # longer line up: the call is made, its required parameter given, its values typed
        call = forced.content[-1]
        assert forced.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "get_weather"
        assert isinstance(call.input.get("city"), str) and set(call.input) <= {"city", "days"}
    offered_none = tool_client.messages.create(**common, tool_choice={"type": "none"})
    assert offered_none.stop_reason == "end_turn" and [b.type for b in offered_none.content] == ["text"]
    assert "<tool_call>" in offered_none.content[0].text  # no tools offered: no call is read
    # the grammar makes a model that would answer Markdown call the named tool
    city = {
        **WEATHER,
        "input_schema": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}},
            "required": ["city"],
        },
    }
    made = client.messages.create(
        model="any",
        max_tokens=200,
        messages=HI,
        tools=[city],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert made.stop_reason == "tool_use" and made.content[-1].input["city"] in ("Paris", "Oslo")
    with pytest.raises(anthropic.BadRequestError, match="not among the tools offered"):
        tool_client.messages.create(**common, tool_choice={"type": "tool", "name": "nope"})


def bad(client, **body) -> dict:
    with pytest.raises(anthropic.BadRequestError) as error:
        client.post("/v1/messages", body=body, cast_to=object)
    assert error.value.status_code == 400
    assert error.value.body["type"] == "error"
    assert error.value.body["error"]["type"] == "invalid_request_error"
    return error.value.body["error"]


def test_bad_requests_are_400_in_anthropic_shape(client):
    assert "max_tokens is required" in bad(client, model="any", messages=HI)["message"]
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    said = bad(client, model="any", max_tokens=9, messages=[{"role": "user", "content": [url]}])
    assert "fetches no URLs" in said["message"]
    broken = {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(),
    }
    picture = {"type": "image", "source": broken}
    said = bad(client, model="any", max_tokens=9, messages=[{"role": "user", "content": [picture]}])
    assert "corrupt or truncated PNG" in said["message"]
    assert "temperature" in bad(client, model="any", max_tokens=9, messages=HI, temperature=9)["message"]
    assert (
        "thinking.type"
        in bad(client, model="any", max_tokens=9, messages=HI, thinking={"type": "x"})["message"]
    )
    system = [{"role": "system", "content": "x"}, *HI]
    assert "top-level `system`" in bad(client, model="any", max_tokens=9, messages=system)["message"]
    prefill = [*HI, {"role": "assistant", "content": "Hel"}]
    assert "prefill" in bad(client, model="any", max_tokens=9, messages=prefill)["message"]
    long = [{"role": "user", "content": " ".join(f"word{i}" for i in range(3000))}]
    assert "but the context holds 2048" in bad(client, model="any", max_tokens=9, messages=long)["message"]


def test_the_key_goes_in_x_api_key_or_as_a_bearer(server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the bearer client alone sends no x-api-key
    wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as error:
        wrong.messages.create(model="any", max_tokens=4, messages=HI)
    assert error.value.body["error"]["type"] == "authentication_error"
    bearer = anthropic.Anthropic(base_url=server.url, auth_token=KEY, max_retries=0)
    assert bearer.messages.count_tokens(model="any", messages=HI).input_tokens > 0
    models = httpx.get(f"{server.url}/v1/models", headers={"x-api-key": KEY})  # every route takes it
    assert models.status_code == 200
    assert httpx.get(f"{server.url}/v1/models", headers={"x-api-key": "wrong"}).status_code == 401


def test_a_stream_that_fails_after_it_began_ends_with_an_error_event():
    """As when the server stops mid-answer: the events so far, then `event: error` in Anthropic's
    shape (the status's type), and nothing after it."""
    import asyncio

    from qwenlocal.events import PromptProgress, TextDelta
    from qwenlocal.server.anthropic_answer import MessageReply, stream
    from qwenlocal.server.reply import Assembler
    from qwenlocal.server.worker import END, shutting_down

    class Answered:  # the part of answer.Answer that stream() uses
        class job:
            cancel = staticmethod(lambda: None)

        async def batch(self):
            return [TextDelta(" there"), shutting_down(), END]

    async def run() -> str:
        reply = MessageReply("m", Assembler(None))
        return "".join(
            [c async for c in stream(Answered(), reply, [PromptProgress(3, 7, 0.1), TextDelta("hi")])]
        )

    events = sse(asyncio.run(run()))
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta", "error"
    ]  # fmt: skip
    assert events[0][1]["message"]["usage"]["input_tokens"] == 7  # the prompt tokens read
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": shutting_down().message}
