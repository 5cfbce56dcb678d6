"""An agent run as a person follows it on a terminal: each call once, readably (never its XML),
the diff and the approval question with its keys, the outcome folded, a step counter; checked on
the whole visible screen (pyte), in-process and once in a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import io
import os
import sys

import pexpect
import pyte

from qwenlocal.agent.approval import ASK, Approver
from qwenlocal.agent.loop import Agent
from qwenlocal.agent.outcome import call_line, fold, outcome
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import Workspace, by_name
from qwenlocal.agent.undo import Run
from qwenlocal.agent.view import AgentView, CallHider
from qwenlocal.events import ReasoningDelta, TextDelta
from qwenlocal.terminal import Terminal
from qwenlocal.testing import ggufs
from qwenlocal.testing.engine import FakeEngine
from qwenlocal.testing.toolcalls import tool_call as call

from .test_agent_loop import OPTIONS

TOOLS = by_name()
ANSWER = "Done: the task is complete."


def screen(text: str, columns: int = 100, lines: int = 60) -> list[str]:
    """What a terminal shows after `text` (bare newlines, as a pty in raw mode would turn them)."""
    term = pyte.Screen(columns, lines)
    pyte.Stream(term).feed(text)
    shown = [line.rstrip() for line in term.display]
    while shown and not shown[-1]:
        shown.pop()
    return shown


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- the text a person reads while a reply streams -------------------------------------------------


def test_the_text_before_a_call_is_kept_and_the_call_hidden_even_split_across_deltas():
    reply = "Let me look <at> it.\n" + call("read_file", path="a.py") + "\nand after"
    for size in (1, 2, 3, 7, len(reply)):
        hider = CallHider()
        shown = "".join(hider.feed(reply[i : i + size]) for i in range(0, len(reply), size))
        assert shown + hider.flush() == "Let me look <at> it.\n" == hider.visible
    bare = CallHider()  # a call without its <tool_call> opener
    assert bare.feed("Reading.\n<func") == "Reading.\n" and bare.feed("tion=read_file>") == ""
    assert bare.visible == "Reading.\n"
    held = CallHider()  # a "<" that never became a marker is text after all
    assert held.feed("a < b, so <tool") == "a < b, so " and held.flush() == "<tool"


def test_a_call_is_one_line_with_its_key_argument():
    assert call_line("read_file", {"path": "src/app.py"}, TOOLS["read_file"]) == "read_file src/app.py"
    line = call_line("read_file", {"path": "a.py", "start_line": 10, "end_line": 20}, TOOLS["read_file"])
    assert line == "read_file a.py start_line=10 end_line=20"
    write = {"path": "notes.md", "content": "# Notes\n\nmany lines\n"}  # the content is in the diff
    assert call_line("write_file", write, TOOLS["write_file"]) == "write_file notes.md"
    shell = call_line("run_shell", {"command": "make &&\nmake test"}, TOOLS["run_shell"])
    assert shell == "run_shell make && …"
    assert call_line("search_files", {"pattern": "TODO", "path": "src"}, TOOLS["search_files"]) == (
        "search_files TODO path=src"
    )
    assert call_line("nope", {"x": "1"}, None) == "nope x=1"


def test_outcomes_are_summed_up_and_long_ones_folded():
    read = "utils.py (2 lines)\n    1  def add(a, b):\n    2      return a + b"
    assert outcome(TOOLS["read_file"], read, True) == ("read 2 lines", [], True)
    part = "big.py (900 lines)\n   10  x\n   11  y\n[lines 12-900 not shown: ask with start_line]"
    assert outcome(TOOLS["read_file"], part, True) == ("read lines 10-11 of 900", [], True)
    diff = "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,3 @@\n+a\n+b\n+c\n"
    created = outcome(TOOLS["write_file"], "created new.txt (6 bytes)\n" + diff, True, diff)
    assert created == ("created new.txt, 3 lines", [], True)
    change = "--- a/u.py\n+++ b/u.py\n@@ -1,2 +1,3 @@\n-x\n+y\n+z\n"
    updated = outcome(TOOLS["edit_file"], "updated u.py (9 bytes)\n" + change, True, change)
    assert updated == ("updated u.py (+2 −1)", [], True)
    long = "$ seq 30\n" + "\n".join(map(str, range(1, 31))) + "\n[exit code 0]"
    assert outcome(TOOLS["run_shell"], long, True) == (
        "exit code 0",
        ["… 26 earlier lines hidden", "27", "28", "29", "30"],
        True,
    )
    failed = outcome(TOOLS["run_shell"], "$ false\n[exit code 1]", True)
    assert failed == ("exit code 1, no output", [], False)
    listed = outcome(TOOLS["list_files"], "a.py\nb.py\n[3 more not shown]", True)
    assert listed == ("2 files", ["a.py", "b.py", "[3 more not shown]"], True)
    error = outcome(TOOLS["read_file"], "Error: no such file: x.py", False)
    assert error == ("Error: no such file: x.py", [], False)
    assert fold(list("abcdefgh"), 3) == ["a", "b", "c", "… 5 more lines hidden"]
    assert fold(list("abcd"), 3) == list("abcd")  # hiding one line would take a line too


# -- one whole run on a terminal, in-process ------------------------------------------------------


class StreamingEngine(FakeEngine):
    """The fake engine, streaming each reply in small pieces as the real one does."""

    def stream(self, messages, options, tools=None, checkpoint=True, keep=()):
        for event in super().stream(messages, options, tools, checkpoint, keep):
            if self.think:
                yield ReasoningDelta(self.think.pop(0))
            for i in range(0, len(event.answer), 5):
                yield TextDelta(event.answer[i : i + 5])
            yield event


def test_a_run_on_a_terminal_shows_each_call_once_readably(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    engine = StreamingEngine(
        [
            "I'll read it first.\n" + call("read_file", path="utils.py"),
            call("edit_file", path="utils.py", old_text="a + b", new_text="a - b")
            + call("run_shell", command="seq 12"),
            "It **subtracts** now.",
        ]
    )
    engine.think = ["The user wants a change.", "Edit, then check.", "Done."]
    out, err = TTY(), TTY()
    term = Terminal(TTY(), out, err, env={"TERM": "xterm-256color"})
    asked = []
    approver = Approver(mode=ASK, ask=lambda tool, preview: asked.append(tool) or "y")
    view = AgentView(True, term=term, max_steps=25)
    agent = Agent(engine, OPTIONS, Workspace(root, Shell(sandbox=False)), approver, Run(root), view)
    assert agent.solve("make it subtract").reason == "answered"
    assert asked == ["edit_file", "run_shell"]
    assert screen(err.getvalue().replace("\n", "\r\n")) == [
        "── step 1/25",
        "The user wants a change.",
        "I'll read it first.",
        "▸ read_file utils.py",
        "  read 2 lines",
        "── step 2/25",
        "Edit, then check.",
        "▸ edit_file utils.py",
        "--- a/utils.py",
        "+++ b/utils.py",
        "@@ -1,2 +1,2 @@",
        " def add(a, b):",
        "-    return a + b",
        "+    return a - b",
        "  ✓ approved",
        "  updated utils.py (+1 −1)",
        "▸ run_shell seq 12",
        "  ✓ approved",
        "  exit code 0",
        "    … 8 earlier lines hidden",
        "    9",
        "    10",
        "    11",
        "    12",
        "── step 3/25",
        "Done.",
    ]
    assert "\x1b[2m" in err.getvalue()  # the reasoning is dimmed
    assert screen(out.getvalue().replace("\n", "\r\n")) == ["It subtracts now."]  # Markdown, on stdout


def test_without_a_terminal_each_event_is_a_plain_line(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    engine = StreamingEngine([call("write_file", path="a.txt", content="hi\n"), "Written."])
    engine.think = ["Write it.", "Done."]
    out, err = io.StringIO(), io.StringIO()
    view = AgentView(False, term=Terminal(io.StringIO(), out, err), max_steps=3)
    agent = Agent(
        engine, OPTIONS, Workspace(root, Shell(sandbox=False)), Approver(mode="yes"), Run(root), view
    )
    agent.solve("write a.txt")
    assert err.getvalue().splitlines() == [
        "── step 1/3",
        "→ write_file path=a.txt content=hi⏎",
        "--- /dev/null",
        "+++ b/a.txt",
        "@@ -0,0 +1 @@",
        "+hi",
        "  --yes",
        "  created a.txt (3 bytes)",
        "  --- /dev/null",
        "  +++ b/a.txt",
        "  @@ -0,0 +1 @@",
        "  +hi",
        "── step 2/3",
    ]
    assert "\x1b" not in err.getvalue() + out.getvalue() and out.getvalue() == "Written.\n"


# -- end to end in a pseudo-terminal: the real engine, the real question ---------------------------


def test_approval_on_a_terminal(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    path = ggufs.write_scripted(
        tmp_path / "agent.gguf",
        {"\n\n": "Writing it.\n" + call("write_file", path="hello.txt", content="hi there")},
        after_tool={"\n\n": ANSWER},
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "agent", "-m", str(path), "--no-think", "-w", str(project), "write hello"],
        env={**os.environ, "TERM": "xterm-256color"},
        timeout=60,
        dimensions=(40, 120),
        encoding="utf-8",
    )
    child.logfile_read = shown = io.StringIO()
    child.expect(r"\(n\)(\x1b\[0m)?: ")
    question = screen(shown.getvalue(), 120, 40)
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and (project / "hello.txt").read_text() == "hi there"
    step = question.index("── step 1/25")
    header = " ".join(question[:step])  # where it works, how commands are confined, what runs freely
    assert header.startswith("qwenlocal: agent in ") and "qwenlocal: approval: nothing" in header
    assert question[step:] == [
        "── step 1/25",
        "Writing it.",
        "▸ write_file hello.txt",
        "--- /dev/null",
        "+++ b/hello.txt",
        "@@ -0,0 +1 @@",
        "+hi there",
        "\\ No newline at end of file",
        "Allow write_file? [y]es / [n]o / [a]lways for write_file / [s]top (n):",
    ]
    after = screen(shown.getvalue(), 120, 40)
    end = next(i for i, line in enumerate(after) if line.startswith("qwenlocal: transcript: "))
    assert after[step:end] == [
        *question[step:-1],
        "Allow write_file? [y]es / [n]o / [a]lways for write_file / [s]top (n): y",
        "  ✓ approved",
        "  created hello.txt, 1 line",
        "── step 2/25",
        ANSWER,
    ]


def test_refusals_and_unreadable_calls_read_once_on_a_terminal(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    engine = StreamingEngine(
        [
            "Reading.\n<tool_call>\nplease read a.txt\n</tool_call>",
            call("delete_everything", path="."),
            call("write_file", path="a.txt", content="x"),
            "Stopped.",
        ]
    )
    engine.think = []
    err = TTY()
    term = Terminal(TTY(), TTY(), err, env={"TERM": "xterm-256color"})
    approver = Approver(mode=ASK, ask=lambda tool, preview: "n")
    agent = Agent(
        engine,
        OPTIONS,
        Workspace(root, Shell(sandbox=False)),
        approver,
        Run(root),
        AgentView(False, term=term),
    )
    agent.solve("write a.txt")
    shown = screen(err.getvalue().replace("\n", "\r\n"), 200)
    assert shown == [
        "── step 1",
        "Reading.",  # the text before the unreadable call, then why (the format reminder is the model's)
        "  Error: a <tool_call> must contain <function=NAME>...</function>.",
        "── step 2",
        "▸ delete_everything path=.",
        "  Error: there is no tool 'delete_everything'. The tools are: read_file, write_file, edit_file, "
        "list_files, search_files, run_shell.",
        "── step 3",
        "▸ write_file a.txt",
        "--- /dev/null",
        "+++ b/a.txt",
        "@@ -0,0 +1 @@",
        "+x",
        "\\ No newline at end of file",
        "  ✗ the user declined",
        "── step 4",
    ]


def test_ctrl_c_while_the_text_streams_gives_the_cursor_back():
    err = TTY()
    view = AgentView(True, term=Terminal(TTY(), TTY(), err, env={"TERM": "xterm-256color"}))
    view(TextDelta("Let me think about "))
    assert err.getvalue().count("\x1b[?25l") == 1  # the live area hides the cursor
    view.interrupted()
    assert "\x1b[?25h" in err.getvalue().split("\x1b[?25l", 1)[1]  # and shows it again
    assert screen(err.getvalue().replace("\n", "\r\n")) == []  # the unfinished text is cleared
