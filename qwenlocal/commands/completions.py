"""`qwenlocal completions`: the shell completion scripts, generated from the CLI by Typer
(completions/ holds copies; a test keeps them current)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ExitCode, QwenlocalError
from .options import terminal

SHELLS = ("bash", "zsh", "fish")


def completions(
    context: typer.Context,
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish")],
) -> None:
    """Print the shell completion script (also shipped in completions/)."""
    terminal(context).write(completion_script(shell))


def completion_script(shell: str) -> str:
    if shell not in SHELLS:
        raise QwenlocalError(
            f"no completion for '{shell}'", hint=f"choose one of: {', '.join(SHELLS)}", code=ExitCode.USAGE
        )
    return _typer_script(prog_name="qwenlocal", complete_var="_QWENLOCAL_COMPLETE", shell=shell) + "\n"


def _typer_script(prog_name: str, complete_var: str, shell: str) -> str:
    """The one use of a private Typer function (typer._completion_shared, as of Typer 0.29):
    tests/test_docs.py checks its signature and that the scripts it makes stay current."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=prog_name, complete_var=complete_var, shell=shell)
