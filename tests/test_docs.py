"""Generated files and docs stay in step with the code."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwenlocal.commands.completions import SHELLS, completion_script
from qwenlocal.errors import exit_code_table
from qwenlocal.testing.cli import run as run_in_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_match_the_cli(shell):
    shipped = (ROOT / "completions" / f"qwenlocal.{shell}").read_text()
    assert shipped == completion_script(shell), (
        f"completions/qwenlocal.{shell} is stale: "
        f"run `qwenlocal completions {shell} > completions/qwenlocal.{shell}`"
    )


def test_typer_s_private_completion_function_is_the_one_we_wrote_against():
    """commands/completions.py's one private import from Typer: if an upgrade changes it, this
    fails here rather than in a user's shell."""
    from typer._completion_shared import get_completion_script

    params = inspect.signature(get_completion_script).parameters
    assert list(params) == ["prog_name", "complete_var", "shell"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())


def _env(words: str) -> dict:
    return {
        "_QWENLOCAL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }


def _complete(words: str) -> list[str]:
    return run_in_process(env=_env(words)).stdout.decode().split()


def test_completion_knows_commands_options_and_models():
    env = {**os.environ, **_env("qwenlocal r")}  # once through a real process, as a shell does it
    out = subprocess.run([sys.executable, "-m", "qwenlocal"], env=env, capture_output=True, text=True)
    assert "run" in out.stdout.split()
    assert "run" in _complete("qwenlocal r")
    assert "doctor" in _complete("qwenlocal d")
    assert "--think-budget" in _complete("qwenlocal run --think-")
    assert "9b:q8_0" in _complete("qwenlocal run --model 9b:")


def test_readme_exit_code_table_matches_the_code():
    readme = (ROOT / "README.md").read_text()
    assert exit_code_table() in readme, "README.md's exit-code table is stale: paste errors.exit_code_table()"


def test_readme_documents_every_command_and_the_setup_commands():
    from qwenlocal.cli import app

    readme = (ROOT / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"qwenlocal {name}" in readme, f"README.md does not document `qwenlocal {name}`"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci and "ruff" in ci
