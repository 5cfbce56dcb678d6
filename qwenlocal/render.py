"""How events look: the answer on stdout, the rest on stderr, through a `Terminal`.

On a TTY the answer is rendered as Markdown while it streams (finished lines go to the
scrollback above a short live area, as aider's mdstream does) and reasoning is dimmed on stderr.
In a pipe the answer is plain text as the model wrote it, reasoning is hidden unless asked for,
and there is no colour or spinner. `NO_COLOR` and `TERM=dumb` are honoured by Rich.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .events import Done, Event, Notice, PromptProgress, ReasoningDelta, Stats, TextDelta

if TYPE_CHECKING:
    from .terminal import Terminal


def restored(stats: Stats) -> str:
    """What a warm start saved, for the footer and the stats line."""
    return f" · restored {stats.cached_tokens:,} tokens from cache" if stats.cached_tokens else ""


def footer_text(stats: Stats) -> str:
    percent = 100 * stats.ctx_used / max(stats.n_ctx, 1)
    return (
        f"{stats.generate_tps:.1f} tok/s · first token {stats.ttft_s:.2f}s · "
        f"context {stats.ctx_used:,}/{stats.n_ctx:,} ({percent:.0f}%)" + restored(stats)
    )


def stats_line(stats: Stats) -> str:
    return (
        f"{stats.generated_tokens} tokens, {stats.generate_tps:.1f} tok/s · "
        f"prompt {stats.prompt_tokens} tokens, {stats.prompt_tps:.1f} tok/s"
        + (f" ({stats.reused_tokens} reused)" if stats.reused_tokens else "")
        + f" · first token {stats.ttft_s:.2f}s · load {stats.load_s:.2f}s"
        f" · context {stats.ctx_used}/{stats.n_ctx}" + restored(stats)
    )


class MarkdownStream:
    """Streams Markdown: stable lines are printed once, the last few stay live until the end."""

    LIVE_LINES = 6
    MIN_INTERVAL = 0.05

    def __init__(self, console) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console
        # Markdown is rendered off-screen, by a console of the same kind that Live does not watch
        self._offscreen = Console(
            width=console.width,
            force_terminal=console.is_terminal,
            color_system=console.color_system,
            no_color=console.no_color,
            highlight=False,
        )
        self.printed = 0
        self.next_at = 0.0
        self.live = Live(console=console, auto_refresh=False, transient=False, redirect_stderr=False)
        self.live.start()

    def _lines(self, text: str) -> list[str]:
        from rich.markdown import Markdown

        with self._offscreen.capture() as capture:
            self._offscreen.print(Markdown(text, code_theme="monokai"))
        return capture.get().splitlines(keepends=True)

    def update(self, text: str, final: bool = False) -> None:
        from rich.text import Text

        now = time.monotonic()
        if not final and now < self.next_at:
            return
        lines = self._lines(text)
        # Re-rendering grows with the answer and shares the CPU with generation: keep it under
        # about a tenth of the time (a render that took 20 ms waits 200 ms for the next one).
        self.next_at = now + max(self.MIN_INTERVAL, 10 * (time.monotonic() - now))
        stable = len(lines) if final else max(len(lines) - self.LIVE_LINES, 0)
        if stable > self.printed:
            self.live.console.print(Text.from_ansi("".join(lines[self.printed : stable])), end="")
            self.printed = stable
        self.live.update(Text.from_ansi("".join(lines[stable:])), refresh=True)
        if final:
            self.live.stop()


@dataclass
class Renderer:
    """Turns events into output. One per answer."""

    term: Terminal
    markdown: bool  # stdout is a TTY: render the answer as Markdown
    show_reasoning: bool
    verbose: bool = False
    json_mode: bool = False
    model: str = ""
    fold_reasoning: bool = False  # chat: reasoning in a short live area, then one summary line

    def __post_init__(self) -> None:
        self._answer = ""
        self._reasoning = ""
        self._stream: MarkdownStream | None = None
        term = self.term
        self._out, self._errs = term.stdout, term.stderr
        self._err = term.err_console() if term.is_tty(term.stderr) else None
        self._thinking = ReasoningStream(
            self._errs, self._err, self.fold_reasoning, "\n\n" if self._err else "\n"
        )
        self._reading: ReadingProgress | None = None

    def handle(self, event: Event) -> None:
        if isinstance(event, PromptProgress):
            if self._err is not None and self.term.colour() and not self.json_mode:
                self._reading = self._reading or ReadingProgress(self._err)
                self._reading.update(event)
            return
        if self._reading is not None:
            self._reading.close()
            self._reading = None
        if isinstance(event, ReasoningDelta):
            self._reasoning += event.text
            if self.show_reasoning and not self.json_mode:
                self._thinking.feed(event.text)
        elif isinstance(event, TextDelta):
            self._end_reasoning()
            self._answer += event.text
            if self.json_mode:
                return
            if self.markdown:
                if self._stream is None:
                    from rich.console import Console

                    self._stream = MarkdownStream(Console(file=self._out, highlight=False))
                self._stream.update(self._answer)
            else:
                self._out.write(event.text)
                self._out.flush()
        elif isinstance(event, Notice):
            self._end_reasoning()
            self.term.warn(event.text)
        elif isinstance(event, Done):
            self.finish(event)

    def _end_reasoning(self) -> None:
        self._thinking.end()

    def finish(self, done: Done) -> None:
        self._end_reasoning()
        self._close(done.finish, done.stats.as_dict())
        if self.verbose:
            self.term.warn(stats_line(done.stats))

    def interrupted(self) -> None:
        """Ctrl-C: keep what was written, close the live area, end the line."""
        if self._reading is not None:
            self._reading.close()
            self._reading = None
        self._close("interrupted", None)
        self._end_reasoning()

    def _close(self, finish: str, stats: dict | None) -> None:
        """End the answer on stdout: the one JSON object, the final Markdown render, or a newline."""
        if self.json_mode:
            payload = {"answer": self._answer, "reasoning": self._reasoning, "model": self.model,
                       "finish": finish, "stats": stats}  # fmt: skip
            self._out.write(json.dumps(payload, ensure_ascii=False) + "\n")
        elif self._stream is not None:
            self._stream.update(self._answer, final=True)
        elif self._answer and not self._answer.endswith("\n"):
            self._out.write("\n")
        self._out.flush()


def reading_text(event: PromptProgress) -> str:
    """ "reading the prompt: 12,288/100,000 tokens (12%) · 131 tok/s · 11m10s left"."""
    left = int(event.left_s)
    when = f"{left // 60}m{left % 60:02d}s" if left >= 60 else f"{left}s"
    return (
        f"reading the prompt: {event.done:,}/{event.total:,} tokens "
        f"({100 * event.done // max(event.total, 1)}%) · {event.rate:.0f} tok/s · {when} left"
    )


class ReadingProgress:
    """A long prompt being read: one live line on stderr, shown once reading has taken a second
    (a short prompt shows nothing), gone when the answer starts. Only on a colour terminal."""

    AFTER_S = 1.0

    def __init__(self, console) -> None:
        self.console = console
        self.live = None

    def update(self, event: PromptProgress) -> None:
        from rich.live import Live
        from rich.text import Text

        if event.seconds < self.AFTER_S or event.done >= event.total:
            return
        if self.live is None:
            self.live = Live(console=self.console, transient=True, auto_refresh=False)
            self.live.start()
        self.live.update(Text(reading_text(event), style="dim"), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class LiveTail:
    """The last lines of a growing text in a small live area on stderr, cleared when it stops
    (the text is then printed once, or summed up in a line). `from_end`: a long line shows its
    end (where the text grows), else its beginning."""

    def __init__(self, console, lines: int, style: str = "", from_end: bool = False) -> None:
        from rich.live import Live

        self.console, self.lines, self.style, self.from_end = console, lines, style, from_end
        self.live = Live(
            console=console, transient=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        )
        self.live.start()

    def update(self, text: str) -> None:
        from rich.text import Text

        width = max(self.console.width - (2 if self.from_end else 1), 20)
        tail = (text if self.from_end else text.strip("\n")).splitlines()[-self.lines :]
        lines = [line[-width:] if self.from_end else line[:width] for line in tail]
        self.live.update(Text("\n".join(lines), style=self.style), refresh=True)

    def stop(self) -> None:
        self.live.stop()


class ReasoningStream:
    """Reasoning as it streams, on stderr: dimmed through `console` (a terminal), plain text
    without one; or, with `fold`, a live tail of its last lines that folds into one summary line
    when the answer starts (`/reasoning` shows it all). `end()` closes it before other output:
    `gap` after streamed text."""

    FOLD_LINES = 4

    def __init__(self, stderr, console=None, fold: bool = False, gap: str = "\n") -> None:
        self.stderr, self.console, self.fold, self.gap = stderr, console, fold and console is not None, gap
        self.text = ""
        self._tail: LiveTail | None = None
        self._started = 0.0
        self.open = False  # text was streamed and the line not yet closed

    def feed(self, text: str) -> None:
        if self.fold:
            self.text += text  # what the tail shows, and the summary counts
            if self._tail is None:
                self._started = time.monotonic()
                self._tail = LiveTail(self.console, self.FOLD_LINES, "dim italic", from_end=True)
            self._tail.update(self.text)
            return
        if self.console is not None:
            self.console.print(text, style="dim italic", end="", highlight=False, markup=False)
        else:
            self.stderr.write(text)
        self.stderr.flush()
        self.open = True

    def end(self) -> None:
        if self._tail is not None:
            self._tail.stop()
            self._tail = None
            seconds = time.monotonic() - self._started
            self.console.print(
                f"▸ thought for {seconds:.1f}s ({len(self.text):,} characters): /reasoning shows it",
                style="dim",
                highlight=False,
            )
        if self.open:
            self.stderr.write(self.gap)
            self.stderr.flush()
            self.open = False


class Spinner:
    """A spinner on stderr while something slow happens, only where the terminal allows colour."""

    def __init__(self, term: Terminal, text: str) -> None:
        self.term = term
        self.text = text
        self._status = None

    def __enter__(self) -> Spinner:
        if self.term.colour():
            self._status = self.term.err_console().status(self.text)
            self._status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.stop()


class DownloadProgress:
    """Download progress on stderr: a Rich bar (bytes, speed, ETA) on a TTY, else sparse lines."""

    def __init__(self, term: Terminal, label: str, plain_every: float = 10.0) -> None:
        self.term = term
        self.label = label
        self.plain_every = plain_every
        self._bar = None
        self._task = None
        self._last = 0.0
        self._started = time.monotonic()
        self._first: int | None = None
        if term.colour():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                "{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=term.err_console(),
                transient=False,
            )

    def __call__(self, done: int, total: int) -> None:
        if self._first is None:  # the start (download.Progress): bytes kept from an earlier try
            self._first, self._last = done, time.monotonic()
            if done:
                self.term.warn(f"resuming {self.label} at {done / 1e9:.2f} of {total / 1e9:.2f} GB")
        if self._bar is not None:
            if self._task is None:
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=total, completed=done)
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= self.plain_every or done >= total:
            self._last = now
            rate = (done - self._first) / max(now - self._started, 1e-6)
            self.term.warn(
                f"{self.label}: {done / 1e9:.2f}/{total / 1e9:.2f} GB ({100 * done / max(total, 1):.0f}%), "
                f"{rate / 1e6:.1f} MB/s"
            )

    def close(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()
