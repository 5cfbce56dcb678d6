"""The terminal: the one object that reads and writes stdin, stdout and stderr.

`cli.main()` builds one for the process; tests build one on in-memory buffers
(`qwenlocal.testing.cli`). Commands talk to the user only through it, and the core never does:
it returns data, yields events or raises. Each question about the terminal is answered here,
once:

- the answer is rendered as Markdown when stdout is a TTY (`markdown`);
- chat's line editor needs stdin and stdout to be TTYs (`line_editor`: it draws on stdout);
- questions and approvals are asked on stderr, so they need stdin and stderr TTYs (`can_ask`);
- reasoning is shown by default when stderr is a TTY (`shows_reasoning`);
- colour, spinners and progress bars need a TTY and neither `NO_COLOR` nor `TERM=dumb` (`colour`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .errors import QwenlocalError
    from .events import Stats
    from .prompt_input import StdinRead
    from .render import DownloadProgress, Renderer, Spinner


class Terminal:
    """stdin, stdout and stderr, and what the program may do with them."""

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.env = env if env is not None else os.environ

    # -- what this terminal is ----------------------------------------------------------------

    @staticmethod
    def is_tty(stream: Any) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):  # no such method, or a closed stream
            return False

    @property
    def markdown(self) -> bool:
        """Render the answer as Markdown: stdout is a TTY."""
        return self.is_tty(self.stdout)

    @property
    def line_editor(self) -> bool:
        """Chat's line editor can run: it reads a TTY and draws on stdout."""
        return self.is_tty(self.stdin) and self.is_tty(self.stdout)

    @property
    def can_ask(self) -> bool:
        """Questions (download? remove? allow this tool?) are asked on stderr and read from stdin."""
        return self.is_tty(self.stdin) and self.is_tty(self.stderr)

    def read_stdin(self, timeout: float) -> StdinRead:
        """Piped stdin, read whole (bounded): nothing from a TTY, or after `timeout` seconds of
        silence (see prompt_input.read_stdin)."""
        from .prompt_input import read_stdin

        return read_stdin(timeout, getattr(self.stdin, "buffer", None))

    def shows_reasoning(self, setting: bool | None) -> bool:
        """--show-reasoning/--hide-reasoning, or by default on a TTY only."""
        return setting if setting is not None else self.is_tty(self.stderr)

    def colour(self, stream: Any = None) -> bool:
        """Colour, spinners and bars: a TTY, and neither NO_COLOR nor TERM=dumb."""
        stream = self.stderr if stream is None else stream
        return self.is_tty(stream) and "NO_COLOR" not in self.env and self.env.get("TERM") != "dumb"

    # -- writing ------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """The answer, or a command's result: stdout."""
        self.stdout.write(text)
        self.stdout.flush()

    def say(self, text: str) -> None:
        """Text for the user to read (help, a replayed conversation): a line on stderr."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def warn(self, text: str) -> None:
        """A notice or warning: one line on stderr."""
        self.say(f"qwenlocal: {text}")

    def error(self, error: QwenlocalError) -> None:
        """The one error line: what went wrong, and the hint saying what to do."""
        hint = f" (hint: {error.hint})" if error.hint else ""
        self.warn(f"error: {error.message}{hint}")

    def internal_error(self, error: BaseException) -> None:
        self.warn(
            f"internal error: {type(error).__name__}: {error} "
            "(hint: run again with QWENLOCAL_DEBUG=1 for a traceback, and report it)"
        )

    def footer(self, stats: Stats) -> None:
        """The line after each chat answer: speed, latency, and how full the context is."""
        from .render import footer_text

        self.err_console().print(footer_text(stats), style="dim", highlight=False)

    def table(self, table: Any) -> None:
        """A Rich table on stdout (wide lines kept whole in a pipe)."""
        from rich.console import Console

        width = None if self.is_tty(self.stdout) else 200
        Console(file=self.stdout, soft_wrap=False, width=width).print(table)

    def markdown_block(self, text: str) -> None:
        """A finished answer as Markdown on stdout."""
        from rich.console import Console
        from rich.markdown import Markdown

        Console(file=self.stdout).print(Markdown(text))

    # -- asking -------------------------------------------------------------------------------

    # A question is plain text: `[y]es` must not be taken for Rich markup and vanish.

    def confirm(self, question: str, default: bool) -> bool:
        from rich.prompt import Confirm
        from rich.text import Text

        console, answers = self.err_console(), self._answers()
        return Confirm.ask(Text(question), default=default, console=console, stream=answers)

    def choose(self, question: str, choices: list[str], default: str) -> str:
        from rich.prompt import Prompt
        from rich.text import Text

        return Prompt.ask(
            Text(question),
            choices=choices,
            default=default,
            show_choices=False,
            console=self.err_console(),
            stream=self._answers(),
        )

    def _answers(self) -> TextIO | None:
        """Where answers are read: the process's own stdin through input() (line editing on a
        TTY), any other stream line by line."""
        return None if self.stdin is sys.stdin else self.stdin

    # -- what draws on it ---------------------------------------------------------------------

    def err_console(self):
        from rich.console import Console

        return Console(file=self.stderr, highlight=False, soft_wrap=True)

    def renderer(self, **options: Any) -> Renderer:
        """The renderer of one answer's events (see render.Renderer for the options)."""
        from .render import Renderer

        return Renderer(self, **options)

    def loading(self, text: str) -> Spinner:
        """A spinner on stderr while something slow happens; nothing unless `colour()`."""
        from .render import Spinner

        return Spinner(self, text)

    def progress(self, label: str, plain_every: float = 10.0) -> DownloadProgress:
        """Download progress: a bar with `colour()`, else a line every `plain_every` seconds."""
        from .render import DownloadProgress

        return DownloadProgress(self, label, plain_every)
