import json
from pathlib import Path

import pytest

from qwenlocal.agent.parse import ToolCall
from qwenlocal.agent.parse import parse as parse_with
from qwenlocal.agent.tools import SCHEMAS, by_name
from qwenlocal.engine.thinking import ThinkSplitter

CALL = (
    "<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/app.py\n</parameter>\n</function>\n</tool_call>"
)


def parse(reply: str):
    """The text and calls of a reply to the agent's own tools, which must all be readable."""
    text, calls, error = parse_with(reply, SCHEMAS)
    assert error is None, error
    return text, calls


def test_a_plain_answer_has_no_calls():
    assert parse("All done.\n") == ("All done.", [])


def test_one_call_with_text_before_it():
    text, calls = parse("Let me look at the file first.\n\n" + CALL)
    assert text == "Let me look at the file first."
    assert calls == [ToolCall("read_file", {"path": "src/app.py"})]


def test_several_calls_in_one_reply():
    second = CALL.replace("read_file", "list_files").replace(
        "<parameter=path>\nsrc/app.py\n</parameter>\n", ""
    )
    _, calls = parse(CALL + "\n" + second)
    assert [c.name for c in calls] == ["read_file", "list_files"] and calls[1].arguments == {}


def test_multiline_values_keep_their_lines_and_json_values_are_typed():
    reply = (
        "<tool_call>\n<function=edit_file>\n<parameter=path>\na.py\n</parameter>\n"
        "<parameter=old_text>\ndef f():\n    return 1\n</parameter>\n"
        "<parameter=new_text>\ndef f():\n    return 2\n</parameter>\n</function>\n</tool_call>"
    )
    _, [call] = parse(reply)
    assert call.arguments["old_text"] == "def f():\n    return 1"
    _, [call] = parse(CALL.replace("src/app.py", "a.py\n</parameter>\n<parameter=start_line>\n3"))
    assert call.arguments == {"path": "a.py", "start_line": 3}


def test_a_reply_cut_before_its_closing_tags_still_parses():
    _, [call] = parse(CALL.removesuffix("</function>\n</tool_call>"))
    assert call == ToolCall("read_file", {"path": "src/app.py"})


def test_the_json_form():
    _, [call] = parse(
        '<tool_call>\n{"name": "run_shell", "arguments": {"command": "ls", "timeout": 5}}\n</tool_call>'
    )
    assert call == ToolCall("run_shell", {"command": "ls", "timeout": 5})


@pytest.mark.parametrize(
    "reply",
    [
        "<tool_call>\nread_file src/app.py\n</tool_call>",
        '<tool_call>\n{"name": "read_file", "arguments": {oops}}\n</tool_call>',
    ],
)
def test_malformed_calls_give_a_message_for_the_model(reply):
    text, calls, error = parse_with(reply, SCHEMAS)
    assert calls == [] and "<tool_call>" in str(error)


# -- the ported llama.cpp cases and issue 11's, as data ------------------------------------------

DATA = Path(__file__).parent / "data"


def _cases():
    for file in ("llamacpp_qwen_toolcalls.json", "qwenlocal_toolcalls.json"):
        data = json.loads((DATA / file).read_text(encoding="utf-8"))
        for case in data["cases"]:
            yield pytest.param(data["tool_schemas"], case, id=f"{file.split('_')[0]}: {case['name']}")


def _schemas(known: dict, names: list[str]) -> list[dict]:
    """The schemas of the tools a case offers: its own (from test-chat.cpp), or qwenlocal's."""
    ours = by_name()
    return [{"type": "function", "function": known[n]} if n in known else ours[n].schema() for n in names]


@pytest.mark.parametrize("pieces", ["whole", "char by char"])
@pytest.mark.parametrize(("known", "case"), list(_cases()))
def test_tool_call_cases(known, case, pieces):
    """The splitter (reasoning / answer, a call ending the reasoning) then the parser, as the agent
    runs them; fed whole and one character at a time, as tokens stream."""
    splitter = ThinkSplitter(case["thinking"], tools=bool(case["tools"]))
    text = case["input"]
    for piece in [text] if pieces == "whole" else list(text):
        list(splitter.feed(piece))
    list(splitter.flush())
    content, calls, error = parse_with(splitter.answer, _schemas(known, case["tools"]))
    expect = case["expect"]
    assert splitter.reasoning == expect["reasoning"]
    assert content == expect["content"]
    assert [{"name": c.name, "arguments": c.arguments} for c in calls] == expect["tool_calls"]
    if "error" in expect:
        assert expect["error"] in str(error)
    else:
        assert error is None, error
    for differs in case.get("llamacpp_expect", {}):  # a deliberate difference is explained
        assert case.get("note"), differs
