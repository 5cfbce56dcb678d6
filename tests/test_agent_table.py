"""The agent's tool table: the schemas offered to the model, the Workspace methods it names, typed
approval decisions, and that a new tool needs one entry and one method, nothing else."""

from __future__ import annotations

import inspect
import json

import pytest

from qwenlocal.agent import tools
from qwenlocal.agent.approval import ASK, AUTO_EDIT, YES, Approver, Decision, Verdict
from qwenlocal.agent.edits import Change
from qwenlocal.agent.loop import Agent
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import TOOLS, Kind, Param, Tool, ToolError, Workspace
from qwenlocal.agent.undo import Run, undo_last
from qwenlocal.testing.engine import FakeEngine
from tests.test_agent_loop import OPTIONS, call

# What the model was offered before the table existed, verbatim: the derived schemas must not
# change by a byte (the chat template renders them into every prompt).
SCHEMAS_BEFORE = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file in the workspace, or only lines start_line..end_line (1-based).",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "relative to the workspace"},
                    "start_line": {"type": "integer"},
                    "end_line": {"type": "integer"},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or overwrite a text file in the workspace with the given content.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace old_text, which must occur exactly once in the file, with new_text.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"},
                },
                "required": ["path", "old_text", "new_text"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_files",
            "description": "List files in the workspace matching a glob pattern (default: all files).",
            "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_files",
            "description": "Search file contents for a regular expression; optionally only under path.",
            "parameters": {
                "type": "object",
                "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
                "required": ["pattern"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_shell",
            "description": "Run a shell command in the workspace; returns its output and exit code.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout": {"type": "integer", "description": "seconds (default 60, at most 600)"},
                },
                "required": ["command"],
            },
        },
    },
]


def test_the_derived_schemas_are_the_ones_offered_before_byte_for_byte():
    assert tools.SCHEMAS == SCHEMAS_BEFORE
    assert json.dumps(tools.SCHEMAS) == json.dumps(SCHEMAS_BEFORE)  # the key order too
    assert [t.name for t in tools.TOOLS] == [
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "search_files",
        "run_shell",
    ]


def test_each_entry_names_a_workspace_method_with_its_parameters():
    for tool in TOOLS:
        method = getattr(Workspace, tool.name)
        assert list(inspect.signature(method).parameters)[1:] == [p.name for p in tool.params], tool.name
        assert tool.key in {p.name for p in tool.params}
    kinds = {tool.name: tool.kind for tool in TOOLS}
    assert kinds == {
        "read_file": Kind.READ,
        "list_files": Kind.READ,
        "search_files": Kind.READ,
        "write_file": Kind.EDIT,
        "edit_file": Kind.EDIT,
        "run_shell": Kind.SHELL,
    }
    by_name = tools.by_name()
    assert {p.name: p.type for p in by_name["read_file"].params} == {
        "path": "string",
        "start_line": "integer",
        "end_line": "integer",
    }
    assert {p.name: p.type for p in by_name["run_shell"].params} == {
        "command": "string",
        "timeout": "integer",
    }


def test_unknown_arguments_are_refused_for_every_kind():
    for tool in TOOLS:
        with pytest.raises(ToolError, match=f"^{tool.name} takes .*; unknown: colour$"):
            tool.check({"colour": "red"})
    assert tools.by_name()["run_shell"].check({"command": "ls"}) == {"command": "ls"}


def test_decisions_are_typed():
    read, write, shell = (tools.by_name()[n] for n in ("read_file", "write_file", "run_shell"))
    assert Approver(mode=ASK).decide(read, "") == Decision(Verdict.YES, "reading needs no approval", False)
    assert Approver(mode=AUTO_EDIT, interactive=False).decide(write, "").allowed
    refused = Approver(mode=AUTO_EDIT, interactive=False).decide(shell, "$ ls")
    assert refused.verdict is Verdict.NO and refused.needed and "not a terminal" in refused.why
    assert Approver(mode=YES, interactive=False).decide(shell, "") == Decision(Verdict.YES, "--yes")
    answers = iter("nas")
    asking = Approver(mode=ASK, ask=lambda tool, preview: next(answers))
    assert asking.decide(write, "diff") == Decision(Verdict.NO, "the user declined")
    assert asking.decide(shell, "$ ls").verdict is Verdict.YES
    assert asking.decide(shell, "$ ls") == Decision(Verdict.YES, "always allowed for run_shell in this run")
    assert asking.decide(write, "diff") == Decision(Verdict.STOP, "the user stopped the agent")


# -- a new tool is one entry and one method ------------------------------------------------------


class Extended(Workspace):
    def count_lines(self, path: str) -> str:
        data, _ = self.text(self.resolve(path), 1 << 20)
        return f"{path}: {len(data.splitlines())} lines"

    def append_file(self, path: str, text: str) -> Change:
        full = self.resolve(path)
        before = full.read_bytes()
        return Change(full, before, before + text.encode())


EXTRA = (
    Tool("count_lines", Kind.READ, "Count a file's lines.", (Param("path", required=True),), key="path"),
    Tool(
        "append_file",
        Kind.EDIT,
        "Append text to a file.",
        (Param("path", required=True), Param("text", required=True)),
        key="path",
    ),
)


def test_a_new_tool_needs_one_entry_and_one_method(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text("one\ntwo\n")
    engine = FakeEngine(
        [
            call("count_lines", path="notes.txt"),
            call("append_file", path="notes.txt", text="three\n"),
            call("count_lines", path="notes.txt", colour="red"),
            "There are three lines.",
        ]
    )
    events = []
    asked = []
    approver = Approver(mode=ASK, ask=lambda tool, preview: asked.append((tool, preview)) or "y")
    run = Run(root)
    workspace = Extended(root, Shell(sandbox=False))
    agent = Agent(engine, OPTIONS, workspace, approver, run, events.append, tools=TOOLS + EXTRA)
    assert agent.solve("count").reason == "answered"
    assert {"count_lines", "append_file"} <= {t["function"]["name"] for t in agent.schemas}
    observations = [seen[-1]["content"] for seen in engine.seen[1:]]
    assert observations[0] == "notes.txt: 2 lines"
    assert observations[1].startswith("updated notes.txt") and "+three" in observations[1]
    assert observations[2] == "Error: count_lines takes path; unknown: colour"
    assert [tool for tool, _ in asked] == ["append_file"]  # the read tool never asked
    assert "+three" in asked[0][1]  # the edit was shown as a diff
    records = [json.loads(line) for line in run.transcript.read_text().splitlines()]
    approvals = [r for r in records if r["type"] == "approval"]
    assert [(r["step"], r["tool"], r["decision"]) for r in approvals] == [
        (1, "count_lines", "yes"),
        (2, "append_file", "yes"),
    ]
    assert approvals[0]["diff"] is None and "+three" in approvals[1]["diff"]
    assert undo_last(root) == ["restored notes.txt"]  # the edit kind was snapshotted before
    assert (root / "notes.txt").read_text() == "one\ntwo\n"


def test_the_view_shows_what_the_kind_and_the_decision_say(capsys):
    from qwenlocal.agent.events import ToolDecision, ToolRequested
    from qwenlocal.agent.view import AgentView
    from qwenlocal.engine.toolcall import ToolCall

    view = AgentView(show_thinking=False)
    count, append = EXTRA
    read_call, edit_call = ToolCall("count_lines", {"path": "a"}), ToolCall("append_file", {"path": "a"})
    view(ToolRequested(read_call, count, 'count_lines({"path": "a"})'))
    view(ToolDecision(read_call, Decision(Verdict.YES, "reading needs no approval", needed=False)))
    view(ToolRequested(edit_call, append, "+three\n"))
    view(ToolDecision(edit_call, Decision(Verdict.NO, "the user declined")))
    shown = "→ count_lines path=a\n→ append_file path=a\n+three\n  the user declined\n"
    assert capsys.readouterr().err == shown
