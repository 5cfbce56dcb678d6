"""`qwenlocal chat` through a running `qwenlocal serve` (engine/remote.py's RemoteEngine), in-process
against the real server in a thread: the conversation is answered there, the model is never loaded
here, Ctrl-C closes the stream and the server stops generating, and the agent gets the model's
text (tool calls in it) as from a local engine. The subprocess path is in test_serve_e2e.py."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest

from qwenlocal.config import Settings
from qwenlocal.conversation import Conversation
from qwenlocal.engine import GenerateOptions
from qwenlocal.engine.remote import RemoteEngine
from qwenlocal.session import ChatSession
from qwenlocal.terminal import Terminal
from qwenlocal.testing import ggufs
from qwenlocal.testing.cli import run as run_in_process
from qwenlocal.testing.server import serving
from qwenlocal.testing.toolcalls import tool_call
from tests.conftest import ANSWER


def no_local_load(*args, **kwargs):
    raise AssertionError("the model was loaded here, not used through the server")


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize("json_mode", [True, False])
def test_piped_chat_answers_through_the_server(answer_model, monkeypatch, json_mode):
    monkeypatch.setattr("qwenlocal.commands.loading.load", no_local_load)
    with serving(answer_model) as running:
        args = ["chat", "-m", str(answer_model), "--no-think", "--server", running.url]
        lines = ("first " + "pad " * 100 + "\n\nsecond\n").encode()
        result = run_in_process(*args, *(["--json"] if json_mode else []), input=lines)
    assert result.returncode == 0, result.stderr
    if not json_mode:
        assert result.stdout.decode() == f"{ANSWER}\n\n{ANSWER}\n\n"
        return
    first, second = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert first["answer"] == second["answer"] == ANSWER
    assert first["model"].endswith("(server)") and first["stats"]["load_s"] == 0
    assert first["stats"]["n_ctx"] == 2048  # the server's context
    # the server went on from the first turn's state: its 100-word message was not read again
    assert second["stats"]["reused_tokens"] > 100


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_full_server_context_moves_old_turns_out(answer_model, monkeypatch):
    monkeypatch.setattr("qwenlocal.commands.loading.load", no_local_load)
    with serving(answer_model, ctx=512) as running:
        lines = "".join(f"message {i} {'7' * 60}\n" for i in range(6)).encode()  # 60 tokens of digits
        args = ["chat", "-m", str(answer_model), "--no-think", "--server", running.url, "--json"]
        result = run_in_process(*args, input=lines)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [a["answer"] for a in answers] == [ANSWER] * 6
    assert "oldest messages out of the context" in result.stderr.decode()  # the server's cannot grow
    assert all(a["stats"]["prompt_tokens"] + 128 <= 512 for a in answers)


class InterruptedOut(io.StringIO):
    """A stdout on which Ctrl-C is pressed after `after` writes (while an answer streams)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.left = after

    def write(self, text: str) -> int:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return super().write(text)


def test_ctrl_c_closes_the_stream_and_the_server_stops(endless_model):
    with serving(endless_model, max_queue=0) as running:
        settings = Settings(model=str(endless_model), think=False)
        term = Terminal(io.StringIO(), InterruptedOut(after=20), io.StringIO())
        from qwenlocal.commands.chat import Chat

        chat = Chat(term, ChatSession(settings, Conversation()), running.url, True)
        chat.load(settings)
        assert isinstance(chat.session.loaded.engine, RemoteEngine)
        chat.send("talk")
        last = chat.session.conversation.messages[-1]
        assert last["interrupted"] and last["content"].startswith("and on and on,")
        assert "interrupted: the partial answer is kept" in term.stderr.getvalue()
        deadline = time.monotonic() + 30  # the server saw the connection close and stopped
        while running.state.worker.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.state.worker.active == 0
        engine = running.state.loaded.engine
        assert len(engine.cache.live) < engine.n_ctx // 2
        # no queue: a request now is answered, not refused as busy
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert httpx.post(f"{running.url}/v1/chat/completions", json=body).status_code == 200


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_the_agent_works_through_the_server(tmp_path):
    """The agent parses calls itself: through a server it gets the text the local engine streams,
    tool calls in it, and its tools run here."""
    from qwenlocal.commands.agent import solve
    from qwenlocal.commands.loading import open_model

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("old\n")
    call = tool_call("write_file", path="notes.txt", content="new")
    model = ggufs.write_scripted(tmp_path / "a.gguf", {"\n\n": call}, after_tool={"\n\n": "Rewrote them."})
    tools = [{"type": "function", "function": {"name": "write_file", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "rewrite the notes"}]
    with serving(model) as running:
        settings = Settings(model=str(model), think=False)
        term = Terminal(io.StringIO(), io.StringIO(), io.StringIO())
        loaded = open_model(term, settings, server=running.url, use_server=True)
        remote, local = loaded.engine, running.state.loaded.engine
        assert isinstance(remote, RemoteEngine)
        assert remote.grow(4096) is None and remote.max_ctx == remote.n_ctx == 2048
        options = GenerateOptions(running.state.defaults(False).sampling, seed=1)
        through = list(remote.stream(messages, options, tools))[-1].answer
        assert through == list(local.stream(messages, options, tools))[-1].answer
        assert "<tool_call>" in through
        finished = solve(term, "rewrite the notes", settings, project, mode="yes", loaded=loaded)
    assert finished.answer == "Rewrote them." and finished.steps == 2
    assert (project / "notes.txt").read_text().strip() == "new"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_an_image_loads_the_model_here_and_the_chat_goes_on(models_dir, tmp_path):
    from qwenlocal.testing import projectors

    model = ggufs.write_scripted(models_dir / "chat-vision.gguf", {"\n\n": "A red square."})
    mmproj = projectors.write_projector(models_dir / "chat-mmproj.gguf")
    png = projectors.write_png(tmp_path / "red.png", 128, 128, (220, 20, 20))
    with serving(model) as running:
        args = ["chat", "-m", str(model), "--mmproj", str(mmproj), "--server", running.url, "--json"]
        result = run_in_process(*args, "--no-think", input=f"hello\nwhat is @{png}\nand now?\n".encode())
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [a["answer"] for a in answers] == ["A red square."] * 3
    assert [a["model"].endswith("(server)") for a in answers] == [True, False, False]
    assert answers[1]["stats"]["image_tokens"] > 0 and answers[1]["stats"]["load_s"] > 0
    assert "images are read by the model loaded here" in result.stderr.decode()
