"""`qwenlocal agent`: set up the workspace, the shell, approval and the view, then solve the task
(`agent.loop.Agent` does the work); `--undo` reverts the last step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..terminal import Terminal
from .options import (
    Ctx,
    GpuLayers,
    Json,
    KvCache,
    Mmproj,
    Model,
    Offline,
    Pull,
    Seed,
    ShowReasoning,
    System,
    Temperature,
    Think,
    ThinkBudget,
    Threads,
    settings,
    terminal,
)

if TYPE_CHECKING:  # the loader imports the engine: not at start-up
    from ..loader import Loaded


def agent(
    context: typer.Context,
    task: Annotated[
        str | None, typer.Argument(help="What to do, e.g. 'add a docstring to utils.py'.")
    ] = None,
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="The folder the agent works in. Default: here.")
    ] = None,
    auto_edit: Annotated[
        bool, typer.Option("--auto-edit", help="Edit files without asking (shell still asks).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run everything without asking.")] = False,
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=1, help="Stop after this many model turns.")
    ] = 25,
    undo: Annotated[bool, typer.Option("--undo", help="Revert the last step of the last run here.")] = False,
    model: Model = None,
    system: System = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    kv_cache: KvCache = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
    mmproj: Mmproj = None,
) -> None:
    """Let the model read, write and edit files and run commands in a workspace, with your approval.

    File tools cannot leave the workspace; shell commands run sandboxed where bubblewrap works;
    every change is snapshotted, and `qwenlocal agent --undo` reverts the last step.
    """
    from ..agent.loop import workspace_path

    term = terminal(context)
    where = workspace_path(workspace)
    if undo:
        undo_step(term, where)
        return
    if not task:
        raise typer.BadParameter(
            "give the task, e.g. qwenlocal agent 'fix the failing test'", param_hint="TASK"
        )
    mode = "yes" if yes else "auto-edit" if auto_edit else "ask"
    finished = solve(term, task, settings(**locals()), where, mode, max_steps)
    if finished.reason != "answered":
        raise typer.Exit(int(ExitCode.AGENT_STOPPED))


def _sees(loaded: Loaded, settings: Settings) -> bool:
    """Whether read_file may show the model images: its projector is loaded, or is on disk (or
    given with --mmproj / QWENLOCAL_MMPROJ) and is loaded now. Nothing is downloaded for it."""
    from ..loader import projector_for

    if loaded.engine.vision is None:
        try:
            _, path = projector_for(settings, loaded.choice)
        except QwenlocalError:
            return False
        if path is not None:
            loaded.engine.attach_projector(path)
    return loaded.engine.vision is not None


def check_workspace(path: Path) -> Path:
    if not path.is_dir():
        raise QwenlocalError(
            f"the workspace {path} is not a directory",
            hint="give --workspace an existing folder",
            code=ExitCode.USAGE,
        )
    if path == Path(path.anchor) or path == Path.home().resolve():
        raise QwenlocalError(
            f"refusing to use {path} as the workspace: it is too broad",
            hint="run the agent inside a project folder, or pass --workspace",
            code=ExitCode.USAGE,
        )
    return path


def _announce(term: Terminal, workspace: Path, label: str, protection: str, mode: str) -> None:
    """Where the agent works, with what, and what protects the machine: said before it starts."""
    term.warn(f"agent in {workspace} with {label}")
    term.warn(f"protection: {protection}")
    free = {"yes": "everything", "auto-edit": "file edits"}.get(mode, "nothing")
    refused = "" if term.can_ask or mode == "yes" else "; not a terminal, so the rest is refused"
    term.warn(f"approval: {free} runs without asking{refused}")


def solve(
    term: Terminal,
    task: str,
    settings: Settings,
    workspace: Path,
    mode: str = "ask",
    max_steps: int = 25,
    loaded: Loaded | None = None,
):
    """Run the agent on `task` in `workspace`; returns how it finished (`agent.loop.Finished`)."""
    from ..agent.approval import Approver
    from ..agent.loop import Agent, Limits
    from ..agent.sandbox import Shell
    from ..agent.tools import Workspace
    from ..agent.undo import Run
    from ..agent.view import AgentView, asker
    from .loading import open_model

    workspace = check_workspace(workspace.resolve())
    if loaded is None:
        loaded = open_model(term, settings)
    shell = Shell(sandbox=True)
    approver = Approver(mode=mode, interactive=term.can_ask, ask=asker(term) if term.can_ask else None)
    run = Run(workspace)
    _announce(term, workspace, loaded.label, shell.protection, mode)
    view = AgentView(term.shows_reasoning(settings.show_reasoning), settings.json, term, max_steps)
    files = Workspace(workspace, shell)
    files.images = _sees(loaded, settings)
    agent = Agent(
        loaded.engine,
        loaded.generate_options(settings),
        files,
        approver,
        run,
        view,
        Limits(max_steps=max_steps),
        system=settings.system,
    )
    try:
        finished = agent.solve(task)
    except KeyboardInterrupt:
        view.interrupted()
        run.log("finished", answer="", reason="interrupted", steps=None)
        term.warn(
            f"interrupted; the transcript is {run.transcript}; `qwenlocal agent --undo` reverts the last step"
        )
        raise
    term.warn(f"transcript: {run.transcript}")
    return finished


def undo_step(term: Terminal, workspace: Path) -> None:
    """Revert the last step of the last agent run in `workspace` (`--undo`, chat's /undo)."""
    from ..agent.undo import undo_last

    warnings: list[str] = []
    changed = undo_last(workspace, warn=warnings.append)
    for line in changed or ([] if warnings else ["the last step's files were already as before"]):
        term.warn(line)
    for line in warnings:
        term.warn(f"warning: {line}")
