"""On a terminal: Markdown on stdout, dimmed reasoning on stderr.

Driven in a real pseudo-terminal (pexpect); what the user finally sees is read back through a
terminal emulator (pyte), so the test checks the screen, not the escape codes on the way.
"""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pyte
import pytest

from qwenlocal.testing.cli import run as run_in_process

from .conftest import REASONING


@pytest.fixture
def cli():
    """The CLI in-process, for what needs no terminal."""
    return run_in_process


COLS, ROWS = 100, 60


def screen(args, env=None) -> tuple[pyte.Screen, int]:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", *args],
        env={**os.environ, "TERM": "xterm-256color", **(env or {})},
        dimensions=(ROWS, COLS),
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    term = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(term)
    stream.feed(child.before.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
    return term, child.exitstatus


def text(term: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in term.display).strip()


def cells(term: pyte.Screen, word: str):
    """The character cells where `word` appears on screen."""
    for y, line in enumerate(term.display):
        x = line.find(word)
        if x >= 0:
            return [term.buffer[y][x + i] for i in range(len(word))]
    raise AssertionError(f"{word!r} not on screen:\n{text(term)}")


def test_answer_is_rendered_as_markdown_on_a_tty(answer_model):
    term, code = screen(["run", "-m", str(answer_model), "--no-think", "hello"])
    assert code == 0
    shown = text(term)
    assert "Hello world!" in shown and "**" not in shown  # bold, not asterisks
    assert all(c.bold for c in cells(term, "world"))
    assert "```" not in shown and " " * 39 + "return 1" in shown  # a code block, indentation intact
    assert shown.count("Hello world!") == 1  # streamed without leaving duplicates in the scrollback


def test_reasoning_is_shown_dimmed_on_a_tty(answer_model):
    term, code = screen(["run", "-m", str(answer_model), "--think", "hello"])
    assert code == 0
    shown = text(term)
    assert REASONING in shown and shown.index(REASONING) < shown.index("Hello world!")
    assert all(c.italics for c in cells(term, "greet them back"))  # dim italic style


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_no_color_turns_colour_off(answer_model):
    term, code = screen(["run", "-m", str(answer_model), "--no-think", "hello"], env={"NO_COLOR": "1"})
    assert code == 0
    colours = {c.fg for row in term.buffer.values() for c in row.values()} | {
        c.bg for row in term.buffer.values() for c in row.values()
    }
    assert colours <= {"default"}
    assert "Hello world!" in text(term)  # still rendered as Markdown


def test_doctor_explains_the_pick(cli):
    result = cli("doctor")
    out = result.stdout.decode()
    assert result.returncode == 0
    for words in ("memory:", "pick:", "why:", "tokens/s", "not downloaded: run `qwenlocal pull"):
        assert words in out
    data = json.loads(cli("doctor", "--json").stdout)
    assert data["pick"]["model"] in ("qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b")
    assert data["hardware"]["total_ram"] > 0 and data["pick"]["reason"]
    fixed = json.loads(cli("doctor", "--json", "--model", "9b:q8_0", "--ctx", "4096").stdout)
    assert (fixed["pick"]["model"], fixed["pick"]["quant"], fixed["pick"]["n_ctx"]) == (
        "qwen3.5-9b",
        "Q8_0",
        4096,
    )
