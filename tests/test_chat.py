"""`qwenlocal chat` driven in a real pseudo-terminal (pexpect) on scripted GGUFs; piped chat
in-process, and once end to end in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest

from qwenlocal.testing.cli import run as run_in_process

from .conftest import ANSWER, REASONING, qwenlocal

PROMPT = "›"
FOOTER = r"context [\d,]+/[\d,]+ \(\d+%\)"  # the line after every answer


def spawn(*args, env=None) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "chat", *args],
        env={**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})},
        dimensions=(50, 120),
        timeout=60,
        encoding="utf-8",
    )
    child.expect("/help for commands")
    child.banner = child.before  # what was shown before the first prompt
    child.expect(PROMPT)
    return child


def say(child: pexpect.spawn, text: str, until: str = FOOTER) -> str:
    """Type a line, wait for `until` (by default the footer of an answer) and the next prompt;
    return what was printed. (The prompt alone is no marker: typing redraws it.)"""
    child.sendline(text)
    child.expect(until)
    out = child.before + child.after
    child.expect(PROMPT)
    return out + child.before


def stats_of(child: pexpect.spawn) -> dict:
    """/stats's table, read back: every row is there, and its numbers."""
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", say(child, "/stats", until=r"% used"))
    rows = {m[1]: m[2] for m in re.finditer(r"^ *([a-z ]+?)  +(\S.*?) *$", out, re.M)}
    assert {"generated", "speed", "prompt", "prompt speed", "first token", "load", "context"} <= set(rows)
    assert rows["speed"].startswith(tuple("0123456789")) and "tok/s" in rows["speed"]
    number = lambda text: int(re.match(r"[\d,]+", text)[0].replace(",", ""))  # noqa: E731
    used, _, n_ctx = rows["context"].partition(" / ")
    return {
        "generated_tokens": number(rows["generated"]),
        "prompt_tokens": number(rows["prompt"]),
        "ctx_used": number(used),
        "n_ctx": number(n_ctx),
    }


def leave(child: pexpect.spawn) -> int:
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def saved_conversations(home: Path) -> list[dict]:
    folder = home / ".local/share/qwenlocal/conversations"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


def test_answers_stream_as_markdown_with_a_footer(answer_model):
    import io

    import pyte

    child = spawn("-m", str(answer_model), "--no-think")
    child.logfile_read = screen_bytes = io.StringIO()
    out = say(child, "hello")
    assert "tok/s" in out and "first token" in out and "/32,768" in out
    assert leave(child) == 0
    term = pyte.Screen(120, 50)
    pyte.Stream(term).feed(screen_bytes.getvalue())
    shown = "\n".join(line.rstrip() for line in term.display)
    assert "Hello world!" in shown and "**" not in shown  # rendered, not raw Markdown
    assert " " * 39 + "return 1" in shown  # the code block keeps its indentation


def test_ctrl_c_stops_the_answer_and_keeps_the_session(endless_model, isolated_home):
    child = spawn("-m", str(endless_model), "--no-think")
    child.sendline("go on")
    child.expect("and on")
    child.sendintr()
    child.expect("interrupted")
    child.expect(PROMPT)
    say(child, "/stats", until="no answer yet")  # still alive (the interrupted answer has no stats)
    assert leave(child) == 0
    messages = saved_conversations(isolated_home)[-1]["messages"]
    assert messages[-1]["role"] == "assistant" and messages[-1]["interrupted"] is True
    partial = messages[-1]["content"]  # however far it got before Ctrl-C, and no further
    assert partial.startswith("and on") and ("and on and on," * 1000).startswith(partial)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_sigterm_ends_the_session_and_keeps_the_partial_answer(endless_model, isolated_home):
    child = spawn("-m", str(endless_model), "--no-think")
    child.sendline("go on")
    child.expect("and on")
    child.kill(signal.SIGTERM)  # mid-answer: unlike Ctrl-C, the session ends
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 143
    assert saved_conversations(isolated_home)[-1]["messages"][-1]["interrupted"] is True
    child = spawn("-m", str(endless_model), "--no-think")
    child.kill(signal.SIGTERM)  # at the prompt, where Ctrl-C only asks for a second one
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 143


def test_ctrl_c_twice_at_the_prompt_leaves(answer_model):
    child = spawn("-m", str(answer_model))
    child.sendintr()
    child.expect("Ctrl-C again")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_stats_is_a_table_of_the_last_answer():
    import io

    from qwenlocal.commands.slash import stats_table
    from qwenlocal.events import Stats
    from qwenlocal.terminal import Terminal

    stats = Stats(load_s=0.5, prompt_tokens=1234, prompt_s=0.2, generated_tokens=56, reasoning_tokens=10,
                  generate_s=1.1, ttft_s=0.25, n_ctx=32768, reused_tokens=1000)  # fmt: skip
    out = io.StringIO()
    Terminal(io.StringIO(), out, io.StringIO()).table(stats_table(stats))
    assert [line.rstrip() for line in out.getvalue().splitlines()] == [
        "last answer",
        " generated          56 tokens  10 of them reasoning",
        " speed             50.0 tok/s  in 1.10s",
        " prompt          1,234 tokens  1,000 of them reused",
        " prompt speed    1170.0 tok/s  in 0.20s",
        " first token            0.25s",
        " load                   0.50s",
        " context       1,290 / 32,768  4% used",
    ]
    assert "{" not in out.getvalue()  # not JSON


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_slash_commands(answer_model, isolated_home, tmp_path):
    child = spawn("-m", str(answer_model), "--no-think")
    assert "/retry" in say(child, "/help", until="attaches")
    say(child, "/think on", until="thinking on")
    out = say(child, "hello")
    assert "thought for" in out and "Hello" in out  # reasoning folded into one line
    assert REASONING in say(child, "/reasoning", until="back")
    say(child, "/think off", until="thinking off")
    say(child, "/system Answer in French.", until="system prompt set")
    assert "Hello" in say(child, "/retry")
    stats = stats_of(child)
    assert stats["generated_tokens"] > 0 and stats["n_ctx"] == 32768
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    say(child, f"/save {md}", until="saved to")
    say(child, f"/save {js}", until="saved to")
    assert "**You:**" in md.read_text() and "Answer in French." in md.read_text()
    saved = json.loads(js.read_text())
    assert saved["system"] == "Answer in French." and [m["role"] for m in saved["messages"]] == [
        "user",
        "assistant",
    ]
    say(child, "/clear", until="new conversation")
    say(child, f"/load {js}", until="loaded")
    say(child, "/frobnicate", until="unknown command")
    say(child, f"/model {answer_model}", until="switched to")
    say(child, "/model 7b", until="unknown model")  # an error, not an exit
    assert "Hello" in say(child, "still there?")
    child.sendline("/exit")
    child.expect(pexpect.EOF)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_history_persists_between_runs(answer_model):
    child = spawn("-m", str(answer_model), "--no-think")
    say(child, "remember this line")
    assert leave(child) == 0
    child = spawn("-m", str(answer_model), "--no-think")
    child.send("\x1b[A")  # Up: the previous session's message comes back
    child.expect("remember this line")
    say(child, "")  # Enter sends the recalled message
    assert leave(child) == 0


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_resume_restores_the_conversation(answer_model, isolated_home):
    child = spawn("-m", str(answer_model), "--no-think")
    say(child, "first question")
    say(child, "second question")
    first_stats = stats_of(child)
    assert leave(child) == 0
    child = spawn("-m", str(answer_model), "--no-think", "--resume")
    assert "second question" in child.banner  # the last turns are shown
    say(child, "third question")
    stats = stats_of(child)
    assert stats["prompt_tokens"] > first_stats["prompt_tokens"]  # the history is in the prompt
    assert leave(child) == 0
    conversations = saved_conversations(isolated_home)
    assert len(conversations) == 1
    users = [m["content"] for m in conversations[0]["messages"] if m["role"] == "user"]
    assert users == ["first question", "second question", "third question"]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_list_and_open_past_conversations(answer_model):
    for text in ("about cats", "about dogs"):  # piped chat end to end, in a subprocess
        assert qwenlocal("chat", "-m", str(answer_model), input=f"{text}\n".encode()).returncode == 0
    listing = run_in_process("chat", "--list").stdout.decode().splitlines()
    assert len(listing) == 2 and "about dogs" in listing[0] and "about cats" in listing[1]
    child = spawn("-m", str(answer_model), "--open", "2")
    assert "about cats" in child.banner
    assert leave(child) == 0


def test_attach_a_file_with_at_path(answer_model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two\n" * 20)
    child = spawn("-m", str(answer_model), "--no-think")
    say(child, "summarize")
    before = stats_of(child)["prompt_tokens"]
    out = say(child, f"summarize @{notes}")
    assert f"attached {notes}" in out
    after = stats_of(child)["prompt_tokens"]
    assert after - before > 200
    assert leave(child) == 0


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_full_context_moves_old_turns_out_with_a_notice(answer_model, isolated_home):
    child = spawn("-m", str(answer_model), "--no-think", "--ctx", "512")
    seen = ""
    for i in range(8):
        seen += say(child, f"message {i} " + "7" * 60)  # 60 tokens: Qwen splits digits
    assert "moved the" in seen and "oldest messages out of the context" in seen
    assert leave(child) == 0
    saved = saved_conversations(isolated_home)[-1]
    assert saved["dropped"] and saved["dropped"][0]["content"].startswith("message 0")


@pytest.mark.parametrize("json_mode", [False, True])
def test_piped_stdin_answers_one_message_per_line(answer_model, json_mode):
    args = ["chat", "-m", str(answer_model), "--no-think"] + (["--json"] if json_mode else [])
    result = run_in_process(*args, input=b"first\n\nsecond\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    if json_mode:
        lines = [json.loads(line) for line in out.splitlines()]
        assert [d["answer"] for d in lines] == [ANSWER, ANSWER]
    else:
        assert out == f"{ANSWER}\n\n{ANSWER}\n\n"
    assert b"Traceback" not in result.stderr


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_agent_and_undo_from_inside_chat(tmp_path):
    from qwenlocal.testing import ggufs

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("old\n")
    call = "<tool_call>\n<function=write_file>\n<parameter=path>\nnotes.txt\n</parameter>\n"
    call += "<parameter=content>\nnew\n</parameter>\n</function>\n</tool_call>"
    model = ggufs.write_scripted(
        tmp_path / "a.gguf", {"\n\n": call}, after_tool={"\n\n": "Rewrote the notes."}
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "chat", "-m", str(model), "--no-think"],
        cwd=project,
        env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"},
        timeout=60,
        encoding="utf-8",
        dimensions=(50, 120),
    )
    child.expect(PROMPT)
    child.sendline("/agent rewrite the notes")
    child.expect(r"Allow write_file\?")
    child.sendline("y")
    child.expect("Rewrote the notes.")
    child.expect(PROMPT)
    assert (project / "notes.txt").read_text() == "new"
    say(child, "/undo", until="restored notes.txt")
    assert (project / "notes.txt").read_text() == "old\n"
    assert leave(child) == 0
