"""`qwenlocal serve` with `response_format` and `tool_choice`, through the official `openai`
client's parse helpers (Pydantic models in, Pydantic objects out), streamed and not, thinking on
and off, on scripted models: one that answers the JSON anyway, one that answers Markdown (the
grammar alone makes its answer valid)."""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel

from qwenlocal.testing import ggufs
from qwenlocal.testing.server import serving
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import REASONING
from tests.test_schema import INVOICE, NARROW
from tests.test_schema import REASONING as INVOICE_REASONING

HI = [{"role": "user", "content": "hi"}]


def thinking(on: bool) -> dict:
    return {"chat_template_kwargs": {"enable_thinking": on}}


class Invoice(BaseModel):
    total: float
    currency: str


class Reading(BaseModel):
    """No free text: a near-uniform model ends each value in a few tokens."""

    ok: bool
    level: Literal["low", "high"]
    count: int


class GetWeather(BaseModel):
    city: Literal["Paris", "Oslo"]
    days: int


@pytest.fixture(scope="module")
def invoice_server(tmp_path_factory):
    model = ggufs.write_scripted(
        tmp_path_factory.mktemp("serve-schema") / "invoice.gguf",
        ggufs.think_reply(INVOICE_REASONING, INVOICE),
        shape=NARROW,
    )
    with serving(model, threads=1) as running:
        yield running


@pytest.fixture(scope="module")
def invoice_client(invoice_server):
    return openai.OpenAI(base_url=f"{invoice_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def markdown_client(answer_model):
    """The suite's scripted model that answers Markdown (conftest.ANSWER), never JSON."""
    with serving(answer_model, threads=1) as running:
        yield openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("think", [False, True])
def test_parse_gives_the_pydantic_object(invoice_client, think):
    completion = invoice_client.chat.completions.parse(
        model="any", messages=HI, response_format=Invoice, extra_body=thinking(think)
    )
    message = completion.choices[0].message
    assert message.parsed == Invoice(total=42.5, currency="EUR")
    assert getattr(message, "reasoning_content", None) == (INVOICE_REASONING if think else None)
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("think", [False, True])
def test_parse_streamed(invoice_client, think):
    with invoice_client.chat.completions.stream(
        model="any", messages=HI, response_format=Invoice, extra_body=thinking(think)
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Invoice(total=42.5, currency="EUR")
    assert "content.done" in kinds


@pytest.mark.parametrize("flag", [["--schema", json.dumps(Invoice.model_json_schema())], ["--json-object"]])
def test_run_schema_through_a_server_sends_it_as_response_format(invoice_server, flag):
    """`run --server URL --schema`: the server constrains, `run` validates what comes back."""
    from qwenlocal.testing.cli import run

    model = str(invoice_server.state.path)
    result = run("run", "-m", model, "--server", invoice_server.url, "--think", *flag, "total?")
    assert result.code == 0, result.stderr
    assert result.stdout.decode() == INVOICE + "\n"
    cut = run(
        "run", "-m", model, "--server", invoice_server.url, "--no-think", *flag, "--max-tokens", "4", "x"
    )
    assert cut.code == 17 and cut.stdout == b""


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize(("think", "streamed"), [(False, False), (True, True)])
def test_the_grammar_makes_a_markdown_model_answer_the_schema(markdown_client, think, streamed):
    """After its reasoning (untouched), the model would write Markdown: the grammar turns the
    answer into a Reading, whatever the model's own preference."""
    kwargs = dict(model="any", messages=HI, response_format=Reading, seed=7, extra_body=thinking(think))
    if streamed:
        with markdown_client.chat.completions.stream(**kwargs) as stream:
            for _ in stream:
                pass
            completion = stream.get_final_completion()
    else:
        completion = markdown_client.chat.completions.parse(**kwargs)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Reading), message.content
    assert (getattr(message, "reasoning_content", None) == REASONING) == think


def test_json_object_is_any_object(markdown_client):
    completion = markdown_client.chat.completions.create(
        model="any", messages=HI, response_format={"type": "json_object"}, max_tokens=400, seed=3,
        extra_body={**thinking(False), "top_k": 4},
    )  # fmt: skip
    choice = completion.choices[0]
    if choice.finish_reason == "stop":  # a random object can run long: then it says so
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.finish_reason == "length"


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize(("think", "streamed"), [(False, True), (True, False)])
def test_a_named_tool_choice_forces_that_call(markdown_client, think, streamed):
    tool = openai.pydantic_function_tool(GetWeather)
    kwargs = dict(
        model="any", messages=HI, tools=[tool], seed=5, extra_body=thinking(think),
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
    )  # fmt: skip
    if streamed:
        with markdown_client.chat.completions.stream(**kwargs) as stream:
            for _ in stream:
                pass
            completion = stream.get_final_completion()
    else:
        completion = markdown_client.chat.completions.parse(**kwargs)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)


@pytest.fixture(scope="module")
def caller_client(tmp_path_factory):
    """Answers with a call to get_weather (Paris, 3 days), in Qwen's XML format."""
    reply = tool_call("get_weather", city="Paris", days=3)
    model = ggufs.write_scripted(tmp_path_factory.mktemp("serve-schema") / "caller.gguf", {"\n\n": reply})
    with serving(model, threads=1) as running:
        yield openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def test_tool_choice_required_lets_a_call_through_as_written(caller_client):
    """The grammar of a call with a free-text parameter admits what the model writes."""
    completion = caller_client.chat.completions.create(
        model="any", messages=HI, tools=[WEATHER], tool_choice="required", extra_body=thinking(False)
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris", "days": 3}


def test_tool_choice_none_offers_no_tools(caller_client):
    completion = caller_client.chat.completions.create(
        model="any", messages=HI, tools=[WEATHER], tool_choice="none", extra_body=thinking(False)
    )
    assert completion.choices[0].message.tool_calls is None


def schema_format(schema: dict) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"tool_choice": "required"}, "tool_choice 'required' needs tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
         "tool_choice names 'x', which is not among the tools offered"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, 'tool_choice must be "none", "auto"'),
        ({"response_format": {"type": "xml"}}, 'response_format.type must be "text"'),
        (schema_format({"type": "integer", "minimum": 1}), "cannot honour minimum"),
        (schema_format({"$ref": "http://x/s.json"}), "points outside the schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "needs a name and a schema"),
    ],
)  # fmt: skip
def test_bad_structure_requests_are_400_naming_the_field(caller_client, extra, said):
    with pytest.raises(openai.BadRequestError) as error:
        caller_client.chat.completions.create(model="any", messages=HI, extra_body=extra)
    assert said in error.value.body["message"]
    assert error.value.body["param"] in ("tool_choice", "response_format")
