"""One error type for everything the user can cause or fix, and the table of exit codes.

Every failure the user can act on is raised as `QwenlocalError(message, hint, code)`; `cli.main()`
is the one place that turns it into a line on stderr and an exit status. README.md's exit-code
table is generated from `EXIT_CODES` (a test keeps the two in step).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # an unexpected internal error (a bug: run again with QWENLOCAL_DEBUG=1)
    USAGE = 2  # bad command-line usage or a bad setting
    UNKNOWN_MODEL = 3  # a model name that is not in the catalog
    MODEL_FILE = 4  # a model file that is missing, truncated, corrupt or not a GGUF
    NOT_DOWNLOADED = 5  # the model is not in the local cache yet
    CONTEXT_OVERFLOW = 6  # the prompt does not fit in the context window
    BAD_INPUT = 7  # unusable input: binary or non-UTF-8 stdin or argument, an empty prompt, a bad image
    DOES_NOT_FIT = 8  # no model (or not the context asked for) fits this machine's memory
    AGENT_STOPPED = 9  # the agent stopped before finishing the task
    NETWORK = 10  # the hub could not be reached (the partial download is kept)
    HUB_NOT_FOUND = 11  # the repository or file does not exist on the hub
    HUB_AUTH = 12  # the repository is gated or private: a token is needed
    DISK_FULL = 13  # not enough free disk space
    CHECKSUM = 14  # the downloaded file does not match the hub's sha256
    OFFLINE = 15  # offline mode and the file is not cached
    NOT_WRITABLE = 16  # a folder qwenlocal writes to is not writable
    STRUCTURED = 17  # a --schema / --json-object answer cut short, or not valid for its schema
    INTERRUPTED = 130  # interrupted with Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # stopped by SIGTERM (128 + SIGTERM), handled as Ctrl-C is


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "unexpected internal error (run with QWENLOCAL_DEBUG=1 for a traceback)",
    ExitCode.USAGE: "bad command-line usage or an invalid setting",
    ExitCode.UNKNOWN_MODEL: "unknown model name (the message lists the valid ones)",
    ExitCode.MODEL_FILE: "model file missing, truncated, corrupt or not a GGUF",
    ExitCode.NOT_DOWNLOADED: "model not downloaded yet (the message names the command to get it)",
    ExitCode.CONTEXT_OVERFLOW: "prompt longer than the context window (never truncated)",
    ExitCode.BAD_INPUT: (
        "unusable input: binary or non-UTF-8 stdin or argument, empty prompt, a corrupt or unsupported image"
    ),
    ExitCode.DOES_NOT_FIT: "no model, or not the context asked for, fits in this machine's memory",
    ExitCode.AGENT_STOPPED: (
        "the agent stopped before finishing (step limit, repeated or bad calls, the user)"
    ),
    ExitCode.NETWORK: "the model hub could not be reached (a partial download is kept and resumed next time)",
    ExitCode.HUB_NOT_FOUND: "repository or file not found on the hub",
    ExitCode.HUB_AUTH: "gated or private repository: log in or set HF_TOKEN",
    ExitCode.DISK_FULL: "not enough free disk space",
    ExitCode.CHECKSUM: "downloaded file does not match the hub's sha256 (it was removed)",
    ExitCode.OFFLINE: "offline and the file is not in the cache",
    ExitCode.NOT_WRITABLE: (
        "a folder qwenlocal writes to (HF_HOME, the data folder) is not writable or read-only"
    ),
    ExitCode.STRUCTURED: (
        "a `--schema` or `--json-object` answer cut short (`--max-tokens`, a full context) or not valid "
        "for its schema; nothing on stdout, the partial text on stderr"
    ),
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); partial output is kept",
    ExitCode.TERMINATED: "terminated (SIGTERM); partial output is kept, as with Ctrl-C",
}


class QwenlocalError(Exception):
    """A failure with a message, a hint saying what to do next, and an exit code."""

    def __init__(self, message: str, hint: str = "", code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that a stopped answer ends the same way (the
    partial answer kept, `--json` still one object) but the process exits whatever it was doing."""


def exit_code_table() -> str:
    """The exit-code table as Markdown, for README.md."""
    rows = ["| code | meaning |", "|---:|---|"]
    rows += [f"| {int(code)} | {text} |" for code, text in EXIT_CODES.items()]
    return "\n".join(rows)
