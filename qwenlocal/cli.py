"""The command line: parse, build settings, call one core function, map errors to exit codes.

The only module that imports Typer. Options shared by several commands are defined once below,
so they are spelled the same everywhere.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer

from . import __version__
from .config import MAX_CTX, MAX_THREADS, MIN_CTX
from .errors import Exit, QwenlocalError, Terminated

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
# Their bounds are checked by config.load_settings, the one check for flags, environment and file.
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
    typer.Option("--think-budget", help="Stop reasoning after N tokens and answer (0: no budget)."),
]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Stop after N generated tokens.")]
Temperature = Annotated[
    float | None, typer.Option("--temperature", "-t", help="Sampling temperature (0: greedy).")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable answers.")]
Ctx = Annotated[
    int | None,
    typer.Option("--ctx", help=f"Context size in tokens, {MIN_CTX} to {MAX_CTX}. Default: fitted to memory."),
]
Threads = Annotated[
    int | None, typer.Option("--threads", help=f"CPU threads, 1 to {MAX_THREADS}. Default: physical cores.")
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
        for i, conv in enumerate(Conversation.saved(), 1):
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


def _hold_closed_streams() -> list[str]:
    """A stream the shell closed (`>&-`) leaves its descriptor free, and the next file opened would
    take it (the answer or llama.cpp's log would land in that file): hold each with /dev/null.
    Returns the names of the closed ones."""
    import os

    closed = []
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:  # what Python sets when the descriptor was not open
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))
            closed.append(name)
    return closed


def _check_arguments(args: list[str]) -> None:
    """Python hands on bytes that are not UTF-8 as lone surrogates, which no prompt, file or JSON
    can hold: refuse them here, before any file is opened, rather than fail half-way."""
    import os

    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise QwenlocalError(
                f"the argument {os.fsencode(arg)!r} is not valid UTF-8",
                hint="convert it (iconv -f latin1 -t utf-8), or rename the file to a UTF-8 name",
                code=Exit.BAD_INPUT,
            ) from None


_terminated: list[int] = []  # Typer turns every KeyboardInterrupt into exit 130: remember SIGTERM


def _terminate(signum, frame) -> None:
    _terminated.append(signum)
    raise Terminated()


def _prepare() -> None:
    import os
    import signal

    if "stdout" in _hold_closed_streams():
        raise QwenlocalError(
            "stdout is closed: the answer has nowhere to go",
            hint="send it to a file or to /dev/null instead of closing it (>&-)",
            code=Exit.USAGE,
        )
    _check_arguments(sys.argv[1:])
    if os.name == "posix":  # SIGTERM ends an answer as Ctrl-C does: partial output kept, JSON whole
        signal.signal(signal.SIGTERM, _terminate)


def _unwritable(error: OSError) -> QwenlocalError | None:
    """A folder that cannot be written (permissions, a read-only file system), named with its fix."""
    import errno

    if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not error.filename:
        return None
    return QwenlocalError(
        f"cannot write to {error.filename}: {error.strerror}",
        hint="make it writable, or move the folder: HF_HOME (or HF_HUB_CACHE) for models, "
        "XDG_DATA_HOME for conversations and history",
        code=Exit.NOT_WRITABLE,
    )


def _usage(error) -> NoReturn:
    """Click's usage errors as the one line every other failure is."""
    if type(error).__name__ == "NoArgsIsHelpError":  # plain `qwenlocal`: the help, as git does
        error.show()
        sys.exit(Exit.USAGE)
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx else "qwenlocal"
    message = error.format_message().rstrip(".")
    report(QwenlocalError(message, hint=f"see `{command} --help`"))
    sys.exit(getattr(error, "exit_code", Exit.USAGE))


def main() -> None:
    """Entry point: the one place where errors become messages and exit codes."""
    from .config import debug

    try:
        _prepare()
        # Typer returns exit codes, Ctrl-C (and so SIGTERM) as 130
        code = app(prog_name="qwenlocal", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        code = Exit.INTERRUPTED
    except Exception as error:
        if isinstance(error, typer.TyperException):  # click's usage errors (Typer vendors click)
            _usage(error)
        known = _unwritable(error) if isinstance(error, OSError) else error
        if debug():
            raise
        if isinstance(known, QwenlocalError):
            report(known)
            sys.exit(int(known.code))
        # a bug: one line, unless debugging
        sys.stderr.write(
            f"qwenlocal: internal error: {type(error).__name__}: {error} "
            "(hint: run again with QWENLOCAL_DEBUG=1 for a traceback, and report it)\n"
        )
        sys.exit(int(Exit.ERROR))
    if code == Exit.INTERRUPTED and _terminated:
        code = Exit.TERMINATED
    if code in (Exit.INTERRUPTED, Exit.TERMINATED):
        sys.stderr.write(f"qwenlocal: {'terminated' if code == Exit.TERMINATED else 'interrupted'}\n")
    sys.exit(code if isinstance(code, int) else 0)
