"""How an agent run looks: steps, calls, diffs and results on stderr; the final answer on stdout.
Everything is written through the command's `Terminal`."""

from __future__ import annotations

from collections.abc import Callable

from ..events import Done, Notice, ReasoningDelta, TextDelta
from ..terminal import Terminal
from .events import Finished, Observation, StepStarted, ToolDecision, ToolRequested
from .tools import Kind


class AgentView:
    def __init__(self, show_thinking: bool, json_mode: bool = False, term: Terminal | None = None) -> None:
        self.term = term = term if term is not None else Terminal()
        self.tty = term.colour()
        self.console = term.err_console()
        self.show_thinking = show_thinking
        self.json_mode = json_mode
        self._streaming = False

    def _line(self, text: str, style: str = "") -> None:
        self._end_stream()
        if self.tty:
            self.console.print(text, style=style, highlight=False, markup=False)
        else:
            self.term.say(text)

    def _end_stream(self) -> None:
        if self._streaming:
            self.term.stderr.write("\n")
            self._streaming = False

    def __call__(self, event) -> None:
        if isinstance(event, ReasoningDelta | TextDelta):
            if self.show_thinking:
                if self.tty:
                    self.console.print(event.text, style="dim", end="", highlight=False, markup=False)
                else:
                    self.term.stderr.write(event.text)
                self._streaming = True
        elif isinstance(event, Notice):
            self._end_stream()
            self.term.warn(event.text)
        elif isinstance(event, Done):
            self._end_stream()
        elif isinstance(event, StepStarted):
            self._line(f"── step {event.step}", "bold cyan")
        elif isinstance(event, ToolRequested):
            self._line(f"→ {event.call.name} {_short(event.call.arguments)}", "bold")
            if event.tool.kind is not Kind.READ:  # the diff or the command
                self._diff(event.preview)
        elif isinstance(event, ToolDecision):
            if event.decision.needed:
                self._line(f"  {event.decision.why}", "green" if event.decision.allowed else "red")
        elif isinstance(event, Observation):
            first = event.text.strip().splitlines()[:6]
            more = len(event.text.strip().splitlines()) - len(first)
            text = "\n".join("  " + line for line in first) + (f"\n  … {more} more lines" if more > 0 else "")
            self._line(text, "" if event.ok else "red")
        elif isinstance(event, Finished):
            self.finish(event)

    def _diff(self, diff: str) -> None:
        if not self.tty:
            self.term.stderr.write(diff if diff.endswith("\n") else diff + "\n")
            self.term.stderr.flush()
            return
        from rich.syntax import Syntax

        self.console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))

    def finish(self, event: Finished) -> None:
        self._end_stream()
        if event.reason != "answered":
            self.term.warn(event.reason)
        if self.json_mode:
            import json

            self.term.write(
                json.dumps({"answer": event.answer, "reason": event.reason, "steps": event.steps}) + "\n"
            )
        elif event.answer:
            if self.term.markdown:
                self.term.markdown_block(event.answer)
            else:
                self.term.write(event.answer.rstrip("\n") + "\n")


def _short(arguments: dict) -> str:
    parts = []
    for key, value in arguments.items():
        text = str(value).replace("\n", "⏎")
        parts.append(f"{key}={text[:60] + '…' if len(text) > 60 else text}")
    return " ".join(parts)


def asker(term: Terminal) -> Callable[[str, str], str]:
    """The approval question on a terminal: y(es) / n(o) / a(lways for this tool) / s(top)."""

    def ask(tool: str, preview: str) -> str:
        question = f"Allow {tool}? [y]es / [n]o / [a]lways for {tool} / [s]top"
        return term.choose(question, choices=["y", "n", "a", "s"], default="n")

    return ask
