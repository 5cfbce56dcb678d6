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
    Cache,
    CacheMax,
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
    from ..models.loader import Loaded


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
    mcp: Annotated[
        list[str] | None,
        typer.Option(
            "--mcp",
            metavar="'[NAME=]COMMAND ARGS'",
            help="Also offer the tools of this MCP server (stdio), as NAME__tool; repeatable.",
        ),
    ] = None,
    auto_mcp: Annotated[
        bool, typer.Option("--auto-mcp", help="Run MCP servers' tools without asking (they can do anything).")
    ] = False,
    instructions: Annotated[
        bool | None,
        typer.Option(
            "--instructions/--no-instructions",
            help="Read the project's AGENTS.md / QWEN.md into the system prompt (default: on).",
        ),
    ] = None,
    list_tools: Annotated[
        bool, typer.Option("--list-tools", help="Print every tool the model would be offered, and exit.")
    ] = False,
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
    cache: Cache = None,
    cache_max: CacheMax = None,
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
    if list_tools:
        print_tools(term, settings(**locals()), where, mcp or [])
        return
    if not task:
        raise typer.BadParameter(
            "give the task, e.g. qwenlocal agent 'fix the failing test'", param_hint="TASK"
        )
    mode = "yes" if yes else "auto-edit" if auto_edit else "ask"
    finished = solve(
        term, task, settings(**locals()), where, mode, max_steps, mcp=mcp or [], auto_mcp=auto_mcp
    )
    if finished.reason != "answered":
        raise typer.Exit(int(ExitCode.AGENT_STOPPED))


def _sees(loaded: Loaded, settings: Settings) -> bool:
    """Whether read_file may show the model images: its projector is loaded, or is on disk (or
    given with --mmproj / QWENLOCAL_MMPROJ) and is loaded now. Nothing is downloaded for it."""
    from ..models.loader import projector_for

    engine = loaded.engine
    if not engine.can_see and engine.can_attach_projector:
        try:
            _, path = projector_for(settings, loaded.choice)
        except QwenlocalError:
            return False
        if path is not None:
            engine.attach_projector(path)
    return engine.can_see


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


def _announce(
    term: Terminal, workspace: Path, label: str, protection: str, mode: str, auto_mcp: bool = False
) -> None:
    """Where the agent works, with what, and what protects the machine: said before it starts."""
    term.warn(f"agent in {workspace} with {label}")
    term.warn(f"protection: {protection}")
    free = {"yes": "everything", "auto-edit": "file edits"}.get(mode, "nothing")
    if auto_mcp and mode != "yes":
        free = "MCP tools" if free == "nothing" else f"{free} and MCP tools"
    refused = "" if term.can_ask or mode == "yes" else "; not a terminal, so the rest is refused"
    term.warn(f"approval: {free} runs without asking{refused}")


def mcp_specs(workspace_flags: list[str]):
    """The MCP servers of this run: the config's `[mcp.NAME]` tables, then each --mcp."""
    from ..agent.mcp import ServerSpec, from_flag
    from ..config import mcp_servers

    specs = [ServerSpec(n, t["command"], tuple(t["args"]), t["env"]) for n, t in mcp_servers().items()]
    for text in workspace_flags:
        specs.append(from_flag(text, {s.name for s in specs}))
    return specs


def open_mcp(settings: Settings, workspace: Path, flags: list[str], images: bool = False):
    """Start the run's MCP servers: (their tools, the servers to close), or ((), None)."""
    specs = mcp_specs(flags)
    if not specs:
        return (), None
    from ..agent.mcp import McpServers

    servers = McpServers(specs, str(workspace), settings.mcp_timeout, images)
    return servers.start(), servers


def print_tools(term: Terminal, settings: Settings, workspace: Path, flags: list[str]) -> None:
    """`--list-tools`: every tool the model would be offered (MCP servers started to ask them)."""
    import json

    from ..agent.tools import TOOLS

    tools, servers = open_mcp(settings, check_workspace(workspace.resolve()), flags)
    try:
        everything = (*TOOLS, *tools)
        if settings.json:
            term.write(json.dumps([t.schema() for t in everything], indent=2) + "\n")
            return
        width = max(len(t.name) for t in everything)
        for tool in everything:
            line = " ".join(tool.description.split())
            term.write(f"{tool.name:<{width}}  {line[:200]}\n")
    finally:
        if servers is not None:
            servers.close()


def solve(
    term: Terminal,
    task: str,
    settings: Settings,
    workspace: Path,
    mode: str = "ask",
    max_steps: int = 25,
    loaded: Loaded | None = None,
    mcp: list[str] = (),
    auto_mcp: bool = False,
):
    """Run the agent on `task` in `workspace`; returns how it finished (`agent.loop.Finished`)."""
    from ..agent.approval import Approver
    from ..agent.loop import Agent, Limits
    from ..agent.sandbox import Shell
    from ..agent.tools import TOOLS, Workspace
    from ..agent.undo import Run
    from ..agent.view import AgentView, asker
    from .loading import open_model

    workspace = check_workspace(workspace.resolve())
    mcp_specs(list(mcp))  # a bad [mcp.NAME] table or --mcp stops the run before the model loads
    if loaded is None:
        loaded = open_model(term, settings)
    shell = Shell(sandbox=True)
    approver = Approver(
        mode=mode, interactive=term.can_ask, ask=asker(term) if term.can_ask else None, auto_mcp=auto_mcp
    )
    files = Workspace(workspace, shell)
    files.images = _sees(loaded, settings)
    extra, servers = open_mcp(settings, workspace, list(mcp), files.images)
    try:
        run = Run(workspace)
        _announce(term, workspace, loaded.label, shell.protection, mode, auto_mcp)
        system = _system(term, settings, workspace, loaded.engine, extra)
        view = AgentView(term.shows_reasoning(settings.show_reasoning), settings.json, term, max_steps)
        agent = Agent(
            loaded.engine,
            loaded.generate_options(settings),
            files,
            approver,
            run,
            view,
            Limits(max_steps=max_steps),
            system=system,
            tools=(*TOOLS, *extra),
        )
        try:
            finished = agent.solve(task)
        except KeyboardInterrupt:
            view.interrupted()
            run.log("finished", answer="", reason="interrupted", steps=None)
            term.warn(
                f"interrupted; the transcript is {run.transcript}; "
                "`qwenlocal agent --undo` reverts the last step"
            )
            raise
    finally:
        if servers is not None:
            servers.close()
    term.warn(f"transcript: {run.transcript}")
    return finished


def _system(term: Terminal, settings: Settings, workspace: Path, engine, mcp_tools) -> str | None:
    """What follows the agent's own system prompt: the project's instructions, then --system;
    the header says which instructions and MCP tools the model was given."""
    parts = []
    if settings.instructions:
        from ..agent.instructions import load

        base = len(engine.prompt_tokens([{"role": "user", "content": ""}], False))

        def count(text: str) -> int:
            return len(engine.prompt_tokens([{"role": "user", "content": text}], False)) - base

        found = load(workspace, count)
        if found is not None:
            term.warn(found.header())
            parts.append(found.text)
    if mcp_tools:
        servers = sorted({t.server for t in mcp_tools})
        term.warn(f"MCP tools: {len(mcp_tools)} from {', '.join(servers)}")
    if settings.system:
        parts.append(settings.system)
    return "\n\n".join(parts) or None


def undo_step(term: Terminal, workspace: Path) -> None:
    """Revert the last step of the last agent run in `workspace` (`--undo`, chat's /undo)."""
    from ..agent.undo import undo_last

    warnings: list[str] = []
    changed = undo_last(workspace, warn=warnings.append)
    for line in changed or ([] if warnings else ["the last step's files were already as before"]):
        term.warn(line)
    for line in warnings:
        term.warn(f"warning: {line}")
