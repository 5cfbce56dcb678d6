"""`qwenlocal serve`'s Responses API (`POST /v1/responses`) with the official `openai` client, against
the real server on scripted models whose greedy reply is known; and the request's translation
(input items, instructions, tools) without a server."""

from __future__ import annotations

import json
from itertools import groupby
from typing import get_args

import openai
import pytest
from openai.types.responses import ResponseStreamEvent

from qwenlocal.engine import GenerateOptions
from qwenlocal.events import TextDelta
from qwenlocal.models.catalog import Sampling
from qwenlocal.server.openai import ApiError
from qwenlocal.server.reply import Assembler
from qwenlocal.server.response_output import Output
from qwenlocal.server.responses import parse
from qwenlocal.testing import ggufs
from qwenlocal.testing.server import serving
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import ANSWER, REASONING

OFF = {"effort": "none"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


# each event type's model in the SDK, to check every event strictly (the SDK itself does not)
EVENTS = {
    get_args(kind.model_fields["type"].annotation)[0]: kind
    for kind in get_args(get_args(ResponseStreamEvent)[0])
}


def checked(events: list) -> list:
    for event in events:
        EVENTS[event.type].model_validate(event.to_dict())
    return events


@pytest.fixture(scope="module")
def server(answer_model):
    with serving(answer_model) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_answers_with_one_message_item(client):
    reply = client.responses.create(model="any", input="hi", reasoning=OFF)
    assert reply.output_text == ANSWER and reply.status == "completed"
    assert reply.object == "response" and reply.id.startswith("resp_")
    [item] = reply.output
    assert item.type == "message" and item.id.startswith("msg_") and item.status == "completed"
    assert item.role == "assistant" and item.content[0].annotations == []
    usage = reply.usage
    assert usage.output_tokens_details.reasoning_tokens == 0 and usage.output_tokens > 3
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    # instructions become the system message; input parts are read as chat completions' are
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    told = client.responses.create(model="any", input=parts, instructions="Be brief.", reasoning=OFF)
    assert told.output_text == ANSWER and told.instructions == "Be brief."
    assert told.usage.input_tokens > usage.input_tokens


def test_reasoning_effort_turns_thinking_on(client):
    thought = client.responses.create(model="any", input="hi", reasoning={"effort": "low"})
    assert [item.type for item in thought.output] == ["reasoning", "message"]
    reasoning = thought.output[0]
    assert reasoning.id.startswith("rs_") and reasoning.summary == []
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text == REASONING
    assert thought.output_text == ANSWER and thought.reasoning.effort == "low"
    assert thought.usage.output_tokens_details.reasoning_tokens > 0


def in_order(types: list[str]) -> list[str]:
    return [kind for kind, _ in groupby(types)]


def test_streams_the_events_the_sdk_builds_a_response_from(client):
    with client.responses.stream(model="any", input="hi", reasoning={"effort": "minimal"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    item = ["response.output_item.added", "response.content_part.added"]
    done = ["response.content_part.done", "response.output_item.done"]
    assert in_order([e.type for e in events]) == [
        "response.created",
        "response.in_progress",
        *item,
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        *done,
        *item,
        "response.output_text.delta",
        "response.output_text.done",
        *done,
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER and len(deltas) > 3  # streamed, not at once
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == REASONING
    assert final.output_text == ANSWER and final.status == "completed" and final.usage.output_tokens > 3
    message = final.output[1]
    assert {e.item_id for e in events if e.type == "response.output_text.delta"} == {message.id}

    raw = checked(list(client.responses.create(model="any", input="hi", reasoning=OFF, stream=True)))
    assert raw[0].type == "response.created" and raw[-1].type == "response.completed"
    assert raw[-1].response.output[0].content[0].text == ANSWER


def test_max_output_tokens_leaves_it_incomplete(client):
    short = client.responses.create(model="any", input="hi", reasoning=OFF, max_output_tokens=3)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert ANSWER.startswith(short.output_text) and short.usage.output_tokens == 3
    assert short.max_output_tokens == 3
    events = checked(
        list(
            client.responses.create(model="any", input="hi", reasoning=OFF, max_output_tokens=3, stream=True)
        )
    )
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


def test_a_chain_goes_on_from_the_kept_state(client):
    common = dict(model="any", instructions="You are Ann.", reasoning=OFF)
    first = client.responses.create(**common, input="hi " + "pad " * 50)
    second = client.responses.create(**common, input="and again", previous_response_id=first.id)
    assert second.output_text == ANSWER and second.previous_response_id == first.id
    assert (
        second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    )  # it holds turn one
    # the engine still holds the first turn's state: only the new tokens are read
    assert second.usage.input_tokens_details.cached_tokens > first.usage.input_tokens - 8
    assert client.responses.retrieve(first.id).output_text == ANSWER

    with pytest.raises(openai.NotFoundError) as error:
        client.responses.create(**common, input="hi", previous_response_id="resp_nothing")
    assert error.value.body["param"] == "previous_response_id"
    unkept = client.responses.create(**common, input="hi", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)


def test_bad_requests_are_400s_naming_the_parameter(client):
    cases = [
        (dict(input=[]), "input"),
        (dict(input="hi", max_output_tokens=0), "max_output_tokens"),
        (dict(input="hi", tools=[{"type": "web_search"}]), "tools[0]"),
        (dict(input="hi", reasoning={"effort": "extreme"}), "reasoning.effort"),
        (
            dict(
                input=[{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]
            ),
            "input[0].content[0]",
        ),
        (
            dict(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]),
            "input[0].arguments",
        ),
    ]
    for body, param in cases:
        with pytest.raises(openai.BadRequestError) as error:
            client.responses.create(model="any", **body)
        assert error.value.body["param"] == param, body


@pytest.fixture(scope="module")
def tool_model(models_dir):
    replies = {"\n\n": "Let me check. " + tool_call("get_weather", city="Paris", days=3)}
    return ggufs.write_scripted(
        models_dir / "responses-weather.gguf", replies, after_tool={"\n\n": "It is sunny."}
    )


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_function_call_round_trip(tool_model):
    with serving(tool_model) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        ask = dict(model="any", tools=[WEATHER], reasoning=OFF)
        first = client.responses.create(**ask, input="weather in Paris?")
        assert [item.type for item in first.output] == ["message", "function_call"]
        assert first.output_text == "Let me check."
        call = first.output[1]
        assert call.name == "get_weather" and call.status == "completed"
        assert json.loads(call.arguments) == {"city": "Paris", "days": 3}  # typed by the schema
        assert call.call_id.startswith("call_") and call.id.startswith("fc_")

        result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"}
        answer = client.responses.create(**ask, input=[result], previous_response_id=first.id)
        assert answer.output_text == "It is sunny." and answer.status == "completed"
        assert answer.usage.input_tokens_details.cached_tokens > 0

        # a client that keeps the conversation itself (store: false) sends the items back
        items = [
            {"role": "user", "content": "weather in Paris?"},
            *(i.model_dump() for i in first.output),
            result,
        ]
        again = client.responses.create(**ask, input=items, store=False)
        assert again.output_text == "It is sunny."

        events = checked(list(client.responses.create(**ask, input="weather in Paris?", stream=True)))
        done = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert len(done) == 1 and json.loads(done[0].arguments) == {"city": "Paris", "days": 3}
        assert events[-1].response.output[-1].type == "function_call"


# -- the request's translation, without a server ---------------------------------------------------


def defaults(think: bool | None) -> GenerateOptions:
    return GenerateOptions(Sampling(0.7, 0.8, 20, 0.0, 1.5, 1.0), think=bool(think), think_budget=2048)


def nothing_kept(id: str) -> list[dict]:
    raise AssertionError("no previous response here")


def test_items_become_the_messages_of_one_conversation():
    items = [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "weather?"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "Hm."}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [{"type": "input_text", "text": "sunny"}],
        },
        {"role": "system", "content": "Be brief."},
    ]
    asked = parse(
        {"input": items, "instructions": "You are Ann.", "tools": [WEATHER], "tool_choice": "required"},
        defaults,
        nothing_kept,
    )
    system, user, assistant, tool, late = asked.messages
    assert system == {"role": "system", "content": "You are Ann.\n\nUse tools."}
    assert user == {"role": "user", "content": "weather?"}
    assert assistant["content"] == "Checking." and assistant["reasoning_content"] == "Hm."
    assert [c["function"] for c in assistant["tool_calls"]] == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}
    ]
    assert tool == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    # Qwen's template takes a system message first only: a later one is said as the user
    assert late == {"role": "user", "content": "Be brief."}
    assert asked.history[0]["role"] == "system" and len(asked.history) == 5  # without the instructions
    assert asked.tools[0]["function"]["name"] == "get_weather" and asked.options.grammar is not None


def test_effort_sets_thinking_and_its_budget():
    def options(effort):
        return parse({"input": "hi", "reasoning": {"effort": effort}}, defaults, nothing_kept).options

    assert not options("none").think
    assert (options("minimal").think_budget, options("medium").think_budget) == (256, 2048)  # the server caps
    assert options("high").think and options("high").think_budget == 2048
    schema = {
        "type": "json_schema",
        "name": "a",
        "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
    }
    assert (
        parse({"input": "hi", "text": {"format": schema}}, defaults, nothing_kept).options.grammar is not None
    )
    with pytest.raises(ApiError, match="tool_choice names 'nope'"):
        parse(
            {"input": "hi", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
            defaults,
            nothing_kept,
        )


def test_a_failure_midway_ends_the_stream_with_response_failed():
    output = Output("m", {}, Assembler(None))
    events = output.start() + output.feed(TextDelta("Hello"))
    events += output.fail(ApiError(503, "the server is shutting down", code="server_shutting_down"))
    assert [e["type"] for e in events][-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_shutting_down"
    assert (
        failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "Hello"
    )
