"""Shell completion scripts, generated from the CLI by Typer (completions/ holds copies)."""

from __future__ import annotations

from .errors import Exit, QwenlocalError

SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        raise QwenlocalError(
            f"no completion for '{shell}'", hint=f"choose one of: {', '.join(SHELLS)}", code=Exit.USAGE
        )
    return (
        get_completion_script(prog_name="qwenlocal", complete_var="_QWENLOCAL_COMPLETE", shell=shell) + "\n"
    )
