"""`qwenlocal agent` end to end: the real llama.cpp engine runs scripted GGUFs whose replies are
Qwen3.5 tool calls (and, once a tool result is in the prompt, a final answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing import ggufs
from qwenlocal.testing.toolcalls import tool_call as call

ANSWER = "Done: the task is complete."


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "secret.txt").write_text("the secret is zebra-7731")
    return root


@pytest.fixture
def model(tmp_path):
    def make(reply: str, answer: str | None = ANSWER, think: bool = False) -> Path:
        path = tmp_path / f"agent-{abs(hash((reply, answer, think)))}.gguf"
        replies = ggufs.think_reply("I should use a tool.", reply) if think else {"\n\n": reply}
        return ggufs.write_scripted(path, replies, after_tool={"\n\n": answer} if answer else None)

    return make


def run_agent(cli, project: Path, model: Path, *args, think=False):
    flags = ["--think"] if think else ["--no-think"]
    return cli("agent", "-m", str(model), *flags, "--workspace", str(project), *args)


def transcript(result) -> list[dict]:
    line = next(x for x in result.stderr.decode().splitlines() if "transcript:" in x)
    path = Path(line.split("transcript:", 1)[1].strip())
    return [json.loads(r) for r in path.read_text().splitlines()]


def results(result) -> list[dict]:
    return [r for r in transcript(result) if r["type"] == "tool_result"]


def test_read_a_file_then_answer(cli, project, model):
    result = run_agent(cli, project, model(call("read_file", path="utils.py")), "what does utils.py do?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == ANSWER + "\n"  # stdout: the answer alone
    err = result.stderr.decode()
    assert "step 1" in err and "read_file path=utils.py" in err and "return a + b" in err
    assert "protection:" in err
    records = transcript(result)
    assert [r["type"] for r in records] == [
        "task",
        "assistant",
        "approval",
        "tool_result",
        "assistant",
        "finished",
    ]
    assert "return a + b" in results(result)[0]["result"]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_thinking_model_calls_tools_too(cli, project, model):
    result = run_agent(cli, project, model(call("list_files"), think=True), "list", think=True)
    assert result.returncode == 0 and result.stdout.decode() == ANSWER + "\n"
    assert "utils.py" in results(result)[0]["result"]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_edit_shows_the_diff_and_can_be_undone(cli, project, model):
    edit = call(
        "edit_file",
        path="utils.py",
        old_text="return a + b",
        new_text='"""Add two numbers."""\n    return a + b',
    )
    result = run_agent(cli, project, model(edit), "--auto-edit", "add a docstring")
    assert result.returncode == 0, result.stderr
    assert '"""Add two numbers."""' in (project / "utils.py").read_text()
    assert '+    """Add two numbers."""' in result.stderr.decode()  # the diff
    undo = cli("agent", "--undo", "--workspace", str(project))
    assert undo.returncode == 0 and b"restored utils.py" in undo.stderr
    assert (project / "utils.py").read_text() == "def add(a, b):\n    return a + b\n"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_shell_command(cli, project, model):
    result = run_agent(
        cli, project, model(call("run_shell", command="python3 -c 'print(6 * 7)'; ls")), "--yes", "x"
    )
    assert result.returncode == 0, result.stderr
    observation = results(result)[0]["result"]
    assert "42" in observation and "utils.py" in observation and "[exit code 0]" in observation


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize("path", ["../secret.txt", "link/secret.txt"])
def test_escaping_the_workspace_is_refused(cli, project, model, path):
    (project / "link").symlink_to(project.parent)
    result = run_agent(cli, project, model(call("read_file", path=path)), "read the secret")
    assert result.returncode == 0
    [observation] = results(result)
    assert observation["ok"] is False and observation["result"].startswith("Error: refused")
    assert "zebra-7731" not in json.dumps(transcript(result)) + result.stderr.decode()


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_write_outside_is_refused_and_nothing_is_created(cli, project, model, tmp_path):
    result = run_agent(
        cli, project, model(call("write_file", path="../planted.txt", content="x")), "--yes", "go"
    )
    assert result.returncode == 0 and not (tmp_path / "planted.txt").exists()
    assert "refused" in results(result)[0]["result"]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_malformed_call_goes_back_to_the_model(cli, project, model):
    result = run_agent(cli, project, model("<tool_call>\nread utils.py please\n</tool_call>"), "x")
    assert result.returncode == 0, result.stderr
    [observation] = results(result)
    assert observation["ok"] is False and "<function=NAME>" in observation["result"]
    assert result.stdout.decode() == ANSWER + "\n"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_call_loop_hits_the_step_limit(cli, project, model):
    result = run_agent(cli, project, model(call("list_files"), answer=None), "--max-steps", "2", "loop")
    assert result.returncode == ExitCode.AGENT_STOPPED
    assert b"limit of 2 steps" in result.stderr


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_not_a_terminal_refuses_changes_and_says_so(cli, project, model):
    result = run_agent(cli, project, model(call("write_file", path="utils.py", content="oops")), "rewrite")
    assert result.returncode == 0
    assert (project / "utils.py").read_text().startswith("def add")
    assert b"not approved: stdin is not a terminal" in result.stderr
    assert "not a terminal" in results(result)[0]["result"]


def test_the_workspace_must_be_a_project_folder(cli, model, tmp_path):
    result = cli("agent", "-m", str(model(call("list_files"))), "--workspace", "/", "x")
    assert result.returncode == ExitCode.USAGE and b"too broad" in result.stderr
