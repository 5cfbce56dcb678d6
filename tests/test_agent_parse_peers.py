"""The tool-call cases vLLM and SGLang read for Qwen3-Coder's XML format that small models really
write: Python literals, single-quoted dicts, double-encoded objects, drifted closers, bare calls.
Each case names the peer test (or parser) it comes from."""

from __future__ import annotations

import pytest

from qwenlocal.agent.approval import YES, Approver
from qwenlocal.agent.loop import Agent
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import Workspace
from qwenlocal.agent.undo import Run
from qwenlocal.engine import GenerateOptions
from qwenlocal.engine.toolcall import parse
from qwenlocal.models.catalog import load
from qwenlocal.testing.engine import FakeEngine


def _tool(name: str, **properties: object) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"properties": properties}}}


TOOLS = [
    _tool(
        "configure",
        flag={"type": "boolean"},
        limit={"type": ["integer", "null"]},
        label={"anyOf": [{"type": "string"}, {"type": "null"}]},
        ratio={"type": "number"},
        options={"type": "object"},
        items={"type": "array"},
    ),
    # vLLM tests/tool_use/test_qwen3coder_tool_parser.py: sample_tools
    _tool("get_weather", city={"type": "string"}, days={"type": "integer"}),
    # SGLang test/registered/function_call/test_qwen3_coder_detector/test_fixtures.py
    _tool("get_current_weather", location={"type": "string"}),
    _tool("sql_interpreter", query={"type": "string"}, dry_run={"type": "boolean"}),
    _tool("TodoWrite", todos={"type": "array"}),
]


def _call(name: str, **args: str) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _one(reply: str):
    _, calls, error = parse(reply, TOOLS)
    assert error is None, error
    [call] = calls
    return call.arguments


# -- Python literals for typed parameters ------------------------------------------------------
# vLLM's qwen3coder_tool_parser reads `True`/`False` for a boolean and `None`/`null` as None;
# SGLang's qwen3_coder_detector (_safe_val) falls back to ast.literal_eval.


@pytest.mark.parametrize(
    ("param", "raw", "expected"),
    [
        ("flag", "True", True),
        ("flag", "False", False),
        ("limit", "None", None),
        ("limit", "7", 7),
        ("label", "None", None),  # a nullable string: None is its null, as "null" is
        ("label", "Nothing", "Nothing"),
    ],
)
def test_python_literals_for_typed_parameters(param, raw, expected):
    assert _one(_call("configure", **{param: raw})) == {param: expected}


def test_a_string_parameter_keeps_python_words_as_text():
    # vLLM and SGLang agree: a string's value is its text, `True` included
    assert _one(_call("get_weather", city="True")) == {"city": "True"}


# -- single-quoted dicts and lists, a double-encoded object ------------------------------------


def test_single_quoted_python_dicts_and_lists_are_literals():
    # SGLang _safe_val: ast.literal_eval when json.loads fails
    args = _one(_call("configure", options="{'a': 1, 'b': [True, None]}", items="['x', 'y']"))
    assert args == {"options": {"a": 1, "b": [True, None]}, "items": ["x", "y"]}


def test_sglangs_mixed_quote_list_of_objects():
    # SGLang test_qwen3_coder_detector/test_cases.py: complex_schema ("status": 'pending')
    reply = (
        "<function=TodoWrite>\n<parameter=todos>\n[\n"
        ' {"content": "Buy a new car", "status": \'pending\'},\n'
        ' {"content": "Buy a new house", "status": "completed"}\n]\n'
        "</parameter>\n</function>\n"
    )
    assert _one(reply) == {
        "todos": [
            {"content": "Buy a new car", "status": "pending"},
            {"content": "Buy a new house", "status": "completed"},
        ]
    }


@pytest.mark.parametrize(
    "raw",
    [
        "__import__('os').system('touch /tmp/qwenlocal-pwned')",
        "{'a': __import__('os').getcwd()}",
        "{'a': (1, 2)}",  # a tuple: not JSON
        "{1: 'a'}",  # a key that is not text
    ],
)
def test_a_literal_is_never_evaluated_and_must_be_json(raw):
    _, calls, error = parse(_call("configure", options=raw), TOOLS)
    assert not calls and error is not None and "options must be object" in str(error)


def test_a_double_encoded_object():
    # vLLM and SGLang test models that JSON-encode the object a second time
    assert _one(_call("configure", options='"{\\"a\\": 1}"')) == {"options": {"a": 1}}


# -- drifted closers -------------------------------------------------------------------------
# SGLang test/registered/unit/function_call/test_qwen3_coder_detector.py,
# TestQwen3CoderDetectorMalformedParameterEnd.test_non_streaming_strips_drifted_end_marker


def _drifted(marker: str) -> str:
    return (
        "<tool_call>\n<function=get_weather>\n"
        f"<parameter=city>\nShanghai\n{marker}\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
    )


@pytest.mark.parametrize("marker", ["</parameter1>", "</parameter_function>", "</parameter"])
def test_drifted_closers_are_stripped(marker):
    assert _one(_drifted(marker)) == {"city": "Shanghai", "days": 3}


@pytest.mark.parametrize("value", ["<config>\n  <p>1</p>\n</parameters>", "x </parameterList>"])
def test_a_closed_value_that_ends_like_a_closer_is_kept(value):
    # SGLang, same class: test_closed_value_ending_like_a_marker_is_kept
    assert _one(_call("get_weather", city=value))["city"] == value


def _agent(root, replies):
    options = GenerateOptions(sampling=load().models["qwen3.5-2b"].sampling(False))
    workspace = Workspace(root, Shell(sandbox=False))
    return Agent(FakeEngine(replies), options, workspace, Approver(mode=YES), Run(root), lambda e: None)


@pytest.mark.parametrize("marker", ["</parameter1>", "</parameter_function>", "</parameter"])
def test_a_drifted_closer_never_ends_up_in_a_written_file(tmp_path, marker):
    reply = (
        "<tool_call>\n<function=write_file>\n<parameter=path>\nnotes.md\n</parameter>\n"
        f"<parameter=content>\n# Notes\nline two\n{marker}\n</function>\n</tool_call>"
    )
    assert _agent(tmp_path, [reply, "Done."]).solve("write notes").reason == "answered"
    assert (tmp_path / "notes.md").read_text() == "# Notes\nline two"


# -- two bare calls ----------------------------------------------------------------------------


def test_two_bare_function_calls_both_run():
    # SGLang test_qwen3_coder_detector/test_cases.py: double_tool_call (verbatim, `True` included)
    reply = """Text prefix + double tool call test

<function=get_current_weather>
<parameter=location>New York</parameter>
</function>
<function=sql_interpreter>
<parameter=query>SELECT * FROM users</parameter>
<parameter=dry_run>True</parameter>
</function>
"""
    text, calls, error = parse(reply, TOOLS)
    assert error is None and text == "Text prefix + double tool call test"
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_current_weather", {"location": "New York"}),
        ("sql_interpreter", {"query": "SELECT * FROM users", "dry_run": True}),
    ]


def test_two_bare_calls_through_the_agent_both_run(tmp_path):
    bare = (
        "<function=write_file>\n<parameter=path>\na.txt\n</parameter>\n<parameter=content>\nA\n"
        "</parameter>\n</function>\n<function=write_file>\n<parameter=path>\nb.txt\n</parameter>\n"
        "<parameter=content>\nB\n</parameter>\n</function>"
    )
    assert _agent(tmp_path, [bare, "Done."]).solve("write both").reason == "answered"
    assert (tmp_path / "a.txt").read_text() == "A" and (tmp_path / "b.txt").read_text() == "B"


# -- a number that is not one stays an error ---------------------------------------------------
# vLLM's parser passes an unconvertible float through as text and SGLang keeps the raw string;
# qwenlocal deliberately does not: a tool would get text where its schema promised a number, so the
# model is told which parameter was wrong and writes the call again.


@pytest.mark.parametrize("raw", ["not-a-number", "null", "None"])
def test_a_number_parameter_that_is_not_a_number_is_an_error_naming_it(raw):
    _, calls, error = parse(_call("configure", ratio=raw), TOOLS)
    assert not calls and error is not None
    assert "configure: ratio must be number (JSON)" in str(error) and repr(raw) in str(error)
