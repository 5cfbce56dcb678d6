"""The agent loop's logic with a fake engine (a list of replies); tools run for real in tmp_path."""

from __future__ import annotations

import json

import pytest

from qwenlocal.agent.approval import ASK, AUTO_EDIT, YES, Approver
from qwenlocal.agent.loop import Agent, Finished, Limits
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import Workspace
from qwenlocal.agent.undo import Run, undo_last
from qwenlocal.engine import GenerateOptions
from qwenlocal.errors import QwenlocalError
from qwenlocal.models.catalog import load
from qwenlocal.testing.engine import FakeEngine

OPTIONS = GenerateOptions(sampling=load().models["qwen3.5-2b"].sampling(False))


def call(name: str, **args) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    return root


def agent(project, replies, mode=YES, answers=(), limits=None, interactive=True):
    answers = list(answers)
    approver = Approver(mode=mode, interactive=interactive, ask=lambda tool, preview: answers.pop(0))
    events = []
    engine = FakeEngine(replies, expect_tools={"read_file", "run_shell"})
    a = Agent(
        engine,
        OPTIONS,
        Workspace(project, Shell(sandbox=False)),
        approver,
        Run(project),
        events.append,
        limits or Limits(),
    )
    return a, engine, events


def test_read_then_answer(project):
    a, engine, events = agent(project, [call("read_file", path="utils.py"), "It adds two numbers."])
    result = a.solve("what does utils.py do?")
    assert result == Finished("It adds two numbers.", "answered", 2)
    tool_message = engine.seen[1][-1]
    assert tool_message["role"] == "tool" and "return a + b" in tool_message["content"]
    assert engine.seen[1][-2]["tool_calls"][0]["function"] == {
        "name": "read_file",
        "arguments": {"path": "utils.py"},
    }


def test_step_limit(project):
    replies = [call("list_files", pattern=f"*{i}") for i in range(10)]
    a, _, _ = agent(project, replies, limits=Limits(max_steps=3))
    assert a.solve("loop").reason == "stopped: the limit of 3 steps was reached"


def test_the_same_call_repeated_is_stopped(project):
    a, _, _ = agent(project, [call("list_files")] * 10)
    result = a.solve("loop")
    assert "repeated the same list_files call 3 times" in result.reason and result.steps == 3


def test_malformed_calls_go_back_to_the_model_and_are_capped(project):
    a, engine, _ = agent(project, ["<tool_call>\nnonsense\n</tool_call>", call("list_files"), "ok"])
    assert a.solve("x").reason == "answered"
    assert engine.seen[1][-1]["role"] == "tool" and "<function=NAME>" in engine.seen[1][-1]["content"]
    a, _, _ = agent(project, ["<tool_call>\nnonsense\n</tool_call>"] * 5)
    assert "3 unreadable tool calls in a row" in a.solve("x").reason


def test_unknown_tool_and_bad_arguments_are_observations(project):
    a, engine, _ = agent(
        project, [call("delete_everything"), call("read_file", path="utils.py", colour="red"), "ok"]
    )
    a.solve("x")
    assert "there is no tool 'delete_everything'" in engine.seen[1][-1]["content"]
    assert "unknown: colour" in engine.seen[2][-1]["content"]


def test_approval_modes(project):
    edit = call("edit_file", path="utils.py", old_text="a + b", new_text="a - b")
    shell = call("run_shell", command="touch made-by-shell")
    # ask: the user says no to the edit, yes to the shell command
    a, engine, events = agent(project, [edit, shell, "ok"], mode=ASK, answers=["n", "y"])
    a.solve("x")
    assert "a + b" in (project / "utils.py").read_text() and (project / "made-by-shell").exists()
    assert "the user declined" in engine.seen[1][-1]["content"]
    # auto-edit: edits without asking, shell refused when nobody can be asked
    a, engine, _ = agent(
        project, [edit, shell.replace("made-by", "second"), "ok"], mode=AUTO_EDIT, interactive=False
    )
    a.solve("x")
    assert "a - b" in (project / "utils.py").read_text() and not (project / "second-shell").exists()
    assert "not a terminal" in engine.seen[2][-1]["content"]
    # "always" for a tool, then "stop"
    write = call("write_file", path="never.txt", content="x")
    a, _, _ = agent(
        project,
        [shell.replace("made-by", "one"), shell.replace("made-by", "two"), write],
        mode=ASK,
        answers=["a", "s"],
    )
    assert a.solve("x").reason == "stopped by the user"
    assert (project / "one-shell").exists() and (project / "two-shell").exists()  # asked once only
    assert not (project / "never.txt").exists()


def test_escape_attempts_touch_nothing_outside(project, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    replies = [
        call("read_file", path="../secret.txt"),
        call("write_file", path="/tmp/x-escape", content="x"),
        call("edit_file", path="../secret.txt", old_text="secret", new_text="gone"),
        "ok",
    ]
    a, engine, _ = agent(project, replies)
    a.solve("escape")
    contents = [seen[-1]["content"] for seen in engine.seen[1:]]
    assert all(c.startswith("Error: refused") for c in contents), contents
    assert all("secret" not in c.split("'")[-1] for c in contents)
    assert (tmp_path / "secret.txt").read_text() == "secret"


def test_every_step_can_be_undone_in_reverse_order(project):
    replies = [
        call("edit_file", path="utils.py", old_text="a + b", new_text="a - b"),
        call("write_file", path="new.txt", content="hello"),
        call("run_shell", command="rm utils.py; echo made > shell.txt"),
        "done",
    ]
    a, _, _ = agent(project, replies)
    a.solve("change things")
    assert not (project / "utils.py").exists() and (project / "shell.txt").exists()
    assert set(undo_last(project)) == {"restored utils.py", "removed shell.txt"}
    assert "a - b" in (project / "utils.py").read_text()
    assert undo_last(project) == ["removed new.txt"]
    assert undo_last(project) == ["restored utils.py"]
    assert (project / "utils.py").read_text() == "def add(a, b):\n    return a + b\n"
    with pytest.raises(QwenlocalError, match="nothing to undo"):
        undo_last(project)


def test_the_transcript_records_every_step(project):
    replies = [call("edit_file", path="utils.py", old_text="a + b", new_text="a - b"), "done"]
    a, _, _ = agent(project, replies)
    a.solve("edit")
    records = [json.loads(line) for line in a.run.transcript.read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds == ["task", "assistant", "approval", "tool_result", "assistant", "finished"]
    assert "+    return a - b" in records[2]["diff"] and records[3]["ok"] is True
