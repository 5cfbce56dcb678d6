import json
from pathlib import Path

import pytest

from qwenlocal.agent.approval import YES, Approver
from qwenlocal.agent.loop import Agent
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import SCHEMAS, Workspace, by_name
from qwenlocal.agent.undo import Run
from qwenlocal.engine import GenerateOptions
from qwenlocal.engine.thinking import ThinkSplitter
from qwenlocal.engine.toolcall import ToolCall
from qwenlocal.engine.toolcall import parse as parse_with
from qwenlocal.models.catalog import load
from qwenlocal.testing.engine import FakeEngine
from qwenlocal.testing.toolcalls import tool_call

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


# -- through the agent loop (a scripted engine, real files) --------------------------------------

PKG = '{\n  "name": "demo",\n  "private": true\n}\n'
DOC = "# Calls\n\nA call:\n\n" + tool_call("read_file", path="src/app.py") + "\n\nThat is all.\n"


def _agent(root, replies):
    records = []
    engine = FakeEngine(replies)
    options = GenerateOptions(sampling=load().models["qwen3.5-2b"].sampling(False))
    run = Run(root)
    workspace = Workspace(root, Shell(sandbox=False))
    agent = Agent(engine, options, workspace, Approver(mode=YES), run, records.append)
    return agent, engine, run


def test_the_agent_writes_json_a_number_and_a_doc_of_the_format_byte_for_byte(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("print('keep me')\n")
    replies = [
        tool_call("write_file", path="package.json", content=PKG),
        tool_call("write_file", path="answer.txt", content="42"),
        tool_call("write_file", path="docs/format.md", content=DOC),
        "Done.",
    ]
    agent, _, _ = _agent(tmp_path, replies)
    assert agent.solve("write them").reason == "answered"
    assert (tmp_path / "package.json").read_text() == PKG
    assert (tmp_path / "answer.txt").read_text() == "42"
    assert (tmp_path / "docs" / "format.md").read_text() == DOC
    assert (tmp_path / "src" / "app.py").read_text() == "print('keep me')\n"


def test_an_unreadable_block_is_reported_while_the_good_call_beside_it_runs(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n")
    reply = "Reading.\n<tool_call>\nplease read a.txt\n</tool_call>\n" + tool_call("read_file", path="a.txt")
    agent, engine, run = _agent(tmp_path, [reply + "\nThen I answer.", "ok"])
    assert agent.solve("read").reason == "answered"
    tool_messages = [m["content"] for m in engine.seen[1] if m["role"] == "tool"]
    assert "alpha" in tool_messages[0]
    assert tool_messages[1].startswith("Error: a <tool_call> must contain <function=NAME>")
    assert "other 1 call(s) in the reply were read and run" in tool_messages[1]
    records = [json.loads(line) for line in run.transcript.read_text().splitlines()]
    record = next(r for r in records if r["type"] == "assistant")
    assert record["content"] == "Reading.\n\nThen I answer."  # the text after the calls is kept
    assert record["tool_calls"] == [{"name": "read_file", "arguments": {"path": "a.txt"}}]


def test_the_json_form_gives_a_string_parameter_text():
    data = {"name": "write_file", "arguments": {"path": "a.json", "content": {"a": 1}}}
    _, [call] = parse(f"<tool_call>\n{json.dumps(data)}\n</tool_call>")
    assert call.arguments == {"path": "a.json", "content": '{\n  "a": 1\n}'}
