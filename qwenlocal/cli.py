"""The command line: parse, build settings, call one core function, map errors to exit codes.

The only module that imports Typer. Options shared by several commands are defined once below,
so they are spelled the same everywhere.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from . import __version__
from .errors import Exit, QwenlocalError

app = typer.Typer(
    name="qwenlocal",
    help="Run Qwen3.5 small models (0.8B, 2B, 4B, 9B) on this machine, private and offline.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, and the completion protocol
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _complete_model(incomplete: str) -> list[str]:
    from .catalog import load

    cat = load()
    names = [a for s in cat.models.values() for a in s.aliases[:1]]
    names += [f"{s.aliases[0]}:{q.lower()}" for s in cat.models.values() for q in s.quants]
    return [n for n in names if n.startswith(incomplete.lower())]


# -- shared options (the same names in run, chat and agent) -----------------------------------
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Catalog name (0.8b, 2b, 4b, 9b, 9b:q8_0) or a .gguf path. "
        "Default: the best fit for this machine.",
        autocompletion=_complete_model,
    ),
]
System = Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")]
Think = Annotated[
    bool | None,
    typer.Option(
        "--think/--no-think", help="Let the model reason first. Default: on for 4B/9B, off for 0.8B/2B."
    ),
]
ThinkBudget = Annotated[
    int | None,
    typer.Option("--think-budget", min=0, help="Stop reasoning after N tokens and answer (0: no budget)."),
]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Stop after N generated tokens.")]
Temperature = Annotated[
    float | None, typer.Option("--temperature", "-t", min=0.0, help="Sampling temperature (0: greedy).")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable answers.")]
Ctx = Annotated[
    int | None, typer.Option("--ctx", min=256, help="Context size in tokens. Default: fitted to memory.")
]
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads. Default: physical cores.")
]
GpuLayers = Annotated[
    int | None, typer.Option("--gpu-layers", help="Layers to offload to the GPU (-1: all). Default: fitted.")
]
Json = Annotated[bool | None, typer.Option("--json", help="Print one JSON object instead of text.")]
Verbose = Annotated[
    bool | None, typer.Option("--verbose", "-v", help="Print speed and token counts on stderr.")
]
Pull = Annotated[bool | None, typer.Option("--pull", help="Download the model first if it is missing.")]
Offline = Annotated[bool, typer.Option("--offline", help="Use only the local cache (as HF_HUB_OFFLINE=1).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ShowReasoning = Annotated[
    bool | None,
    typer.Option(
        "--show-reasoning/--hide-reasoning", help="Reasoning on stderr. Default: shown on a TTY only."
    ),
]


def _offline(offline: bool) -> None:
    """--offline: huggingface_hub reads HF_HUB_OFFLINE when first imported, which is after this."""
    if offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"


def _settings(**flags: Any):
    """Settings from the command's parameters (those that are settings; others are ignored)."""
    from .config import SETTING_NAMES, load_settings

    return load_settings({k: v for k, v in flags.items() if k in SETTING_NAMES})


@app.command()
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="The instruction. Piped stdin is added as material.")
    ] = None,
    model: Model = None,
    system: System = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    verbose: Verbose = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
) -> None:
    """Answer one prompt and exit. The answer alone goes to stdout.

    Examples: qwenlocal run "why is the sky blue?";
    git diff | qwenlocal run "write a commit message"
    """
    from . import oneshot

    settings = _settings(**locals())
    _offline(offline)
    oneshot.run(settings, prompt)


@app.command()
def chat(
    model: Model = None,
    system: System = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    verbose: Verbose = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
    resume: Annotated[bool, typer.Option("--resume", "-r", help="Continue the last conversation.")] = False,
    open_: Annotated[
        str | None,
        typer.Option("--open", help="Continue a saved conversation: a number from --list, or an id."),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List saved conversations and exit.")] = False,
) -> None:
    """Talk with a model in the terminal. Conversations are saved as they go.

    With piped stdin: one message per line, each answered in plain text (JSON lines with --json).
    """
    from . import repl
    from .conversation import Conversation

    if list_:
        for i, path in enumerate(Conversation.saved(), 1):
            conv = Conversation.load(path)
            sys.stdout.write(f"{i:3}  {conv.id}  {len(conv.messages):3} messages  {conv.title}\n")
        return
    settings = _settings(**locals())
    _offline(offline)
    repl.chat(settings, resume, open_)


@app.command()
def agent(
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
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
) -> None:
    """Let the model read, write and edit files and run commands in a workspace, with your approval.

    File tools cannot leave the workspace; shell commands run sandboxed where bubblewrap works;
    every change is snapshotted, and `qwenlocal agent --undo` reverts the last step.
    """
    from .agent import main as agent_main
    from .agent.loop import workspace_path

    where = workspace_path(workspace)
    if undo:
        agent_main.undo(where)
        return
    if not task:
        raise typer.BadParameter(
            "give the task, e.g. qwenlocal agent 'fix the failing test'", param_hint="TASK"
        )
    settings = _settings(**locals())
    _offline(offline)
    mode = "yes" if yes else "auto-edit" if auto_edit else "ask"
    agent_main.run_agent(task, settings, where, mode, max_steps)


@app.command()
def doctor(
    model: Model = None,
    ctx: Ctx = None,
    json: Json = None,
) -> None:
    """Show the hardware qwenlocal detected and the model it picks, with the reason."""
    from . import diagnose

    settings = _settings(model=model, ctx=ctx, json=json)
    diagnose.doctor(settings)


@app.command()
def pull(
    model: Annotated[
        str | None,
        typer.Argument(help="Catalog name (2b, 9b:q8_0). Default: the pick.", autocompletion=_complete_model),
    ] = None,
    ctx: Ctx = None,
    json: Json = None,
    offline: Offline = False,
) -> None:
    """Download a model into the Hugging Face cache: resumable, verified against the hub's sha256."""
    from . import manage

    _offline(offline)
    manage.pull(model, _settings(ctx=ctx, json=json))


@app.command("list")
def list_(json: Json = None) -> None:
    """Every catalog model and every local GGUF: size, downloaded or partial, whether it fits here."""
    from . import manage

    manage.list_models(_settings(json=json))


app.command("ls", hidden=True, help="Alias of list.")(list_)


@app.command()
def rm(
    model: Annotated[
        str,
        typer.Argument(
            help="2b:q4_k_m for one file, 2b for every file of a model.", autocompletion=_complete_model
        ),
    ],
    yes: Yes = False,
    json: Json = None,
) -> None:
    """Remove downloaded (or partial) model files from the cache and free the space."""
    from . import manage

    manage.remove(model, _settings(json=json), yes)


@app.command()
def show(
    model: Annotated[str, typer.Argument(help="Catalog name or .gguf path.", autocompletion=_complete_model)],
    json: Json = None,
) -> None:
    """Path, size, sha256 and the GGUF's own metadata of a local model."""
    from . import manage

    manage.show(model, _settings(json=json))


@app.command()
def completions(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish")],
) -> None:
    """Print the shell completion script (also shipped in completions/)."""
    from .shell import completion_script

    sys.stdout.write(completion_script(shell))


def _version(value: bool) -> None:
    if value:
        print(f"qwenlocal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


def report(error: QwenlocalError) -> None:
    hint = f" (hint: {error.hint})" if error.hint else ""
    sys.stderr.write(f"qwenlocal: error: {error.message}{hint}\n")


def main() -> None:
    """Entry point: the one place where errors become messages and exit codes."""
    from .config import debug

    try:
        code = app(
            prog_name="qwenlocal", standalone_mode=False
        )  # Typer turns Ctrl-C into 130 and returns exit codes
    except QwenlocalError as error:
        if debug():
            raise
        report(error)
        sys.exit(int(error.code))
    except typer.TyperException as error:  # click's usage errors (Typer vendors click)
        show = getattr(error, "show", None)
        show() if show else sys.stderr.write(f"qwenlocal: error: {error.format_message()}\n")
        sys.exit(getattr(error, "exit_code", Exit.USAGE))
    except typer.Abort:
        code = Exit.INTERRUPTED
    except Exception as error:  # a bug: one line, unless debugging
        if debug():
            raise
        sys.stderr.write(
            f"qwenlocal: internal error: {type(error).__name__}: {error} "
            "(hint: run again with QWENLOCAL_DEBUG=1 for a traceback, and report it)\n"
        )
        sys.exit(int(Exit.ERROR))
    if code == Exit.INTERRUPTED:
        sys.stderr.write("qwenlocal: interrupted\n")
    sys.exit(code if isinstance(code, int) else 0)
