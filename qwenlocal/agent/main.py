"""`qwenlocal agent`: set up the workspace, the shell, approval and the run, then solve the task."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import Settings
from ..errors import Exit, QwenlocalError
from ..loader import Loaded, open_model
from ..render import is_tty, loading, warn
from .approval import ASK, Approver
from .loop import Agent, Finished, Limits
from .sandbox import Shell
from .tools import Workspace
from .undo import Run, undo_last
from .view import AgentView, ask


def check_workspace(path: Path) -> Path:
    if not path.is_dir():
        raise QwenlocalError(
            f"the workspace {path} is not a directory",
            hint="give --workspace an existing folder",
            code=Exit.USAGE,
        )
    if path == Path(path.anchor) or path == Path.home().resolve():
        raise QwenlocalError(
            f"refusing to use {path} as the workspace: it is too broad",
            hint="run the agent inside a project folder, or pass --workspace",
            code=Exit.USAGE,
        )
    return path


def solve(
    task: str,
    settings: Settings,
    workspace: Path,
    mode: str = ASK,
    max_steps: int = 25,
    loaded: Loaded | None = None,
    sandbox: bool = True,
) -> Finished:
    workspace = check_workspace(workspace.resolve())
    if loaded is None:
        with loading("Loading model"):
            loaded = open_model(settings)
    shell = Shell(sandbox=sandbox)
    interactive = is_tty(sys.stdin) and is_tty(sys.stderr)
    approver = Approver(mode=mode, interactive=interactive, ask=ask if interactive else None)
    run = Run(workspace)
    warn(f"agent in {workspace} with {loaded.label}")
    warn(f"protection: {shell.protection}")
    free = {"yes": "everything", "auto-edit": "file edits"}.get(mode, "nothing")
    refused = "" if interactive or mode == "yes" else "; not a terminal, so the rest is refused"
    warn(f"approval: {free} runs without asking{refused}")
    show = settings.show_reasoning if settings.show_reasoning is not None else is_tty(sys.stderr)
    view = AgentView(show_thinking=show, json_mode=settings.json)
    agent = Agent(
        loaded.engine,
        loaded.generate_options(settings),
        Workspace(workspace, shell),
        approver,
        run,
        view,
        Limits(max_steps=max_steps),
        system=settings.system,
    )
    try:
        finished = agent.solve(task)
    except KeyboardInterrupt:
        run.log("finished", answer="", reason="interrupted", steps=None)
        warn(
            f"interrupted; the transcript is {run.transcript}; `qwenlocal agent --undo` reverts the last step"
        )
        raise
    warn(f"transcript: {run.transcript}")
    return finished


def run_agent(task: str, settings: Settings, workspace: Path, mode: str, max_steps: int) -> None:
    finished = solve(task, settings, workspace, mode, max_steps)
    if finished.reason != "answered":
        raise SystemExit(int(Exit.AGENT_STOPPED))


def undo(workspace: Path) -> None:
    warnings: list[str] = []
    changed = undo_last(workspace, warn=warnings.append)
    for line in changed or ([] if warnings else ["the last step's files were already as before"]):
        warn(line)
    for line in warnings:
        warn(f"warning: {line}")
