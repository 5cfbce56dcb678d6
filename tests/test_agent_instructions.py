"""Project instructions: AGENTS.md / QWEN.md from the workspace up to its repository's root go into
the agent's system prompt, capped, named in the header; never a file outside the repository."""

from __future__ import annotations

import io

import pytest

from qwenlocal.agent.instructions import find, load
from qwenlocal.config import Settings
from qwenlocal.terminal import Terminal
from qwenlocal.testing import ggufs


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def repo(tmp_path):
    """outside/AGENTS.md (not read) > repo/.git, repo/AGENTS.md > repo/pkg (the workspace)."""
    (tmp_path / "AGENTS.md").write_text("OUTSIDE the repository: never read.\n")
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "AGENTS.md").write_text("Run the tests with pytest -q.\n")
    (root / "pkg").mkdir()
    return root


def test_the_nearest_file_up_to_the_repository_root(repo):
    found = load(repo / "pkg", words)
    assert found.files == ("../AGENTS.md",)
    assert "Run the tests with pytest -q." in found.text and "OUTSIDE" not in found.text
    assert found.header() == "instructions: ../AGENTS.md, 8 tokens"  # with its "## ../AGENTS.md" heading
    (repo / "pkg" / "AGENTS.md").write_text("Nearer.\n")
    (repo / "QWEN.md").write_text("Qwen Code's file.\n")
    found = load(repo / "pkg", words)
    assert found.files == ("AGENTS.md", "../QWEN.md") and "Run the tests" not in found.text


def test_outside_a_repository_only_the_workspace_is_read(tmp_path):
    workspace = tmp_path / "plain"
    workspace.mkdir()
    assert load(workspace, words) is None  # tmp_path/AGENTS.md above it is not read
    (tmp_path / "AGENTS.md").write_text("above\n")
    assert find(workspace) == []


def test_a_link_out_of_the_repository_is_not_followed(repo, tmp_path):
    (repo / "AGENTS.md").unlink()
    (tmp_path / "secret.md").write_text("the secret is zebra-7731\n")
    (repo / "AGENTS.md").symlink_to(tmp_path / "secret.md")
    assert load(repo / "pkg", words) is None


def test_a_long_file_is_cut_with_a_notice(repo):
    (repo / "AGENTS.md").write_text(" ".join(f"rule{i}" for i in range(20_000)))
    found = load(repo, words, limit=1000)
    assert found.cut and found.tokens <= 1000
    assert found.text.rstrip().endswith(
        "[The instructions were cut here, at 1,000 tokens: the rest was left out.]"
    )
    assert "(cut to fit" in found.header()


def test_the_model_is_told_and_the_header_says_so(repo, tmp_path):
    """The real engine counts the tokens and renders the prompt with the instructions in it."""
    from qwenlocal.agent.loop import SYSTEM
    from qwenlocal.agent.tools import SCHEMAS
    from qwenlocal.commands.agent import _system
    from qwenlocal.commands.loading import open_model

    model = ggufs.write_scripted(tmp_path / "i.gguf", {"\n\n": "ok"})
    term = Terminal(io.StringIO(), io.StringIO(), io.StringIO())
    loaded = open_model(term, Settings(model=str(model), think=False))
    try:
        system = _system(term, Settings(system="Be brief."), repo / "pkg", loaded.engine, ())
        messages = [
            {"role": "system", "content": SYSTEM.format(workspace=repo) + "\n\n" + system},
            {"role": "user", "content": "go"},
        ]
        prompt = loaded.engine.render(messages, False, SCHEMAS)
        off = _system(term, Settings(instructions=False), repo / "pkg", loaded.engine, ())
    finally:
        loaded.engine.close()
    assert "Run the tests with pytest -q." in prompt and prompt.index("pytest -q") < prompt.index("Be brief.")
    lines = term.stderr.getvalue().splitlines()
    header = [line.removeprefix("qwenlocal: ") for line in lines if "instructions:" in line]
    assert len(header) == 1 and header[0].startswith("instructions: ../AGENTS.md, ")
    assert header[0].endswith(" tokens") and int(header[0].split(", ")[1].split()[0]) > 3
    assert off is None


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_no_instructions_flag_and_setting(cli, repo, tmp_path, isolated_home):
    model = ggufs.write_scripted(tmp_path / "n.gguf", {"\n\n": "Nothing to do."})
    run = ["agent", "-m", str(model), "--no-think", "--workspace", str(repo / "pkg"), "say hi"]
    on = cli(*run)
    assert on.returncode == 0, on.stderr
    assert b"instructions: ../AGENTS.md, " in on.stderr
    off = cli(*run, "--no-instructions")
    assert off.returncode == 0 and b"instructions:" not in off.stderr
    config = isolated_home / "config.toml"
    config.write_text("instructions = false\n")
    assert b"instructions:" not in cli(*run, env={"QWENLOCAL_CONFIG": str(config)}).stderr
