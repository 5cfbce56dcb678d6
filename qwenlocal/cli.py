"""The command line: assemble the Typer app from `commands/`, and turn errors into exit codes.

The only module that builds the app. `main()` is the process's entry point: it guards the
process (closed streams, SIGTERM), builds the one `Terminal`, and calls `execute`, which tests
call in-process with a terminal on string buffers (`qwenlocal.testing.cli`).
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from . import __version__
from .commands import agent, cache, chat, completions, doctor, models, ps, run, serve
from .errors import ExitCode, QwenlocalError, Terminated
from .terminal import Terminal

app = typer.Typer(
    name="qwenlocal",
    help="Run Qwen3.5 small models (0.8B, 2B, 4B, 9B) on this machine, private and offline.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, and the completion protocol
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(run.run)
app.command()(chat.chat)
app.command()(agent.agent)
app.command()(serve.serve)
app.command()(ps.ps)
app.command()(doctor.doctor)
app.command()(models.pull)
app.command("list")(models.list_)
app.command("ls", hidden=True, help="Alias of list.")(models.list_)
app.command()(models.rm)
app.command()(models.show)
app.command()(cache.cache)
app.command()(completions.completions)


def _version(context: typer.Context, value: bool) -> None:
    if value:
        from .commands.options import terminal

        terminal(context).write(f"qwenlocal {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


# -- errors and exit codes ----------------------------------------------------------------------


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
                code=ExitCode.BAD_INPUT,
            ) from None


def _unwritable(error: OSError) -> QwenlocalError | None:
    """A folder that cannot be written (permissions, a read-only file system), named with its fix."""
    import errno

    if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not error.filename:
        return None
    return QwenlocalError(
        f"cannot write to {error.filename}: {error.strerror}",
        hint="make it writable, or move the folder: HF_HOME (or HF_HUB_CACHE) for models, "
        "XDG_DATA_HOME for conversations and history",
        code=ExitCode.NOT_WRITABLE,
    )


def _usage(term: Terminal, error) -> int:
    """Click's usage errors as the one line every other failure is."""
    if type(error).__name__ == "NoArgsIsHelpError":  # plain `qwenlocal`: the help, as git does
        error.show(file=term.stderr)
        return ExitCode.USAGE
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx else "qwenlocal"
    message = error.format_message().rstrip(".")
    term.error(QwenlocalError(message, hint=f"see `{command} --help`"))
    return getattr(error, "exit_code", ExitCode.USAGE)


def execute(args: list[str], term: Terminal) -> int:
    """Run one command line; the one place where errors become messages and exit codes."""
    from .config import debug

    try:
        _check_arguments(args)
        # Typer returns exit codes, Ctrl-C (and so SIGTERM) as 130
        code = app(args=args, prog_name="qwenlocal", standalone_mode=False, obj=term)
    except (typer.Abort, KeyboardInterrupt):
        code = ExitCode.INTERRUPTED
    except Exception as error:
        if isinstance(error, typer.TyperException):  # click's usage errors (Typer vendors click)
            return int(_usage(term, error))
        known = _unwritable(error) if isinstance(error, OSError) else error
        if debug():
            raise
        if isinstance(known, QwenlocalError):
            term.error(known)
            return int(known.code)
        term.internal_error(error)  # a bug: one line, unless debugging
        return int(ExitCode.ERROR)
    if code == ExitCode.INTERRUPTED and _terminated:
        code = ExitCode.TERMINATED
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        term.warn("terminated" if code == ExitCode.TERMINATED else "interrupted")
    return code if isinstance(code, int) else 0


# -- the process ----------------------------------------------------------------------------------


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


_terminated: list[int] = []  # Typer turns every KeyboardInterrupt into exit 130: remember SIGTERM


def _terminate(signum, frame) -> None:
    _terminated.append(signum)
    raise Terminated()


def main() -> NoReturn:
    """The process's entry point: one terminal for the whole run, then `execute`."""
    import os
    import signal

    closed = _hold_closed_streams()
    term = Terminal()
    if "stdout" in closed:
        term.error(
            QwenlocalError(
                "stdout is closed: the answer has nowhere to go",
                hint="send it to a file or to /dev/null instead of closing it (>&-)",
            )
        )
        sys.exit(ExitCode.USAGE)
    if os.name == "posix":  # SIGTERM ends an answer as Ctrl-C does: partial output kept, JSON whole
        signal.signal(signal.SIGTERM, _terminate)
    sys.exit(execute(sys.argv[1:], term))
