"""How an agent run looks: steps, calls, diffs and results on stderr; the final answer on stdout.
Everything is written through the command's `Terminal`.

On a terminal (colour) a step reads:

    ── step 2/25
    I'll add the docstring.                  (the model's text; streamed live, then kept)
    ▸ edit_file utils.py                     (each call once, readably, never its XML)
    <the diff, or the command>
    Allow edit_file? [y]es / [n]o / [a]lways for edit_file / [s]top (n): y
      ✓ approved
      updated utils.py (+1 −0)               (the outcome; long output folded)

Reasoning streams dimmed. Elsewhere (a pipe, NO_COLOR) the same events are plain lines.
"""

from __future__ import annotations

from collections.abc import Callable

from ..engine.thinking import partial_suffix
from ..engine.toolcall import FORMAT_REMINDER, MARKERS  # from a call on, the reply is not for reading
from ..events import Done, Notice, ReasoningDelta, TextDelta
from ..render import LiveTail, ReasoningStream
from ..terminal import Terminal
from .events import Finished, ModelReplied, Observation, StepStarted, ToolDecision, ToolRequested
from .outcome import WIDE, call_line, outcome
from .tools import Kind, Tool


class CallHider:
    """The streamed text a person reads: everything before the first tool call's markup. Holds
    back a piece that may be the start of a marker split across deltas."""

    def __init__(self) -> None:
        self.visible = ""
        self._held = ""
        self._hidden = False

    def feed(self, text: str) -> str:
        if self._hidden:
            return ""
        text = self._held + text
        cuts = [i for i in (text.find(m) for m in MARKERS) if i >= 0]
        if cuts:
            self._hidden, self._held = True, ""
            shown = text[: min(cuts)]
        else:
            keep = max(partial_suffix(text, m) for m in MARKERS)
            shown, self._held = text[: len(text) - keep], text[len(text) - keep :]
        self.visible += shown
        return shown

    def flush(self) -> str:
        """The reply ended: a held piece that never became a marker is text after all."""
        held, self._held = self._held, ""
        self.visible += held
        return held


class AgentView:
    def __init__(
        self,
        show_thinking: bool,
        json_mode: bool = False,
        term: Terminal | None = None,
        max_steps: int | None = None,
    ) -> None:
        self.term = term = term if term is not None else Terminal()
        self.tty = term.colour()
        self.console = term.err_console()
        self.show_thinking = show_thinking
        self.json_mode = json_mode
        self.max_steps = max_steps
        self._thinking = ReasoningStream(term.stderr, self.console if self.tty else None)
        self._hider = CallHider()
        self._live: LiveTail | None = None
        self._unread = ""  # the text of a reply whose calls could not be read
        self._requested: dict[int, tuple[Tool, str]] = {}  # id(call) -> its tool and preview
        self._refused: set[int] = set()  # calls whose refusal was shown already

    def _line(self, text: str, style: str = "") -> None:
        self._end_stream()
        if self.tty:
            self.console.print(text, style=style, highlight=False, markup=False)
        else:
            self.term.say(text)

    def _end_stream(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._thinking.end()

    def __call__(self, event) -> None:
        if isinstance(event, ReasoningDelta):
            self._reasoning(event.text)
        elif isinstance(event, TextDelta):
            self._text(event.text)
        elif isinstance(event, Notice):  # ContextShortened too
            self._end_stream()
            self.term.warn(event.text)
        elif isinstance(event, Done):
            self._hider.flush()
            self._end_stream()
        elif isinstance(event, ModelReplied):
            self._replied(event)
        elif isinstance(event, StepStarted):
            of = f"/{self.max_steps}" if self.max_steps else ""
            self._line(f"── step {event.step}{of}", "bold cyan")
        elif isinstance(event, ToolRequested):
            self._requested_(event)
        elif isinstance(event, ToolDecision):
            self._decided(event)
        elif isinstance(event, Observation):
            self._observed(event)
        elif isinstance(event, Finished):
            self.finish(event)

    # -- the model's reply ----------------------------------------------------------------------

    def _reasoning(self, text: str) -> None:
        if self.show_thinking:
            self._thinking.feed(text)

    def _text(self, text: str) -> None:
        self._hider.feed(text)
        if not self.tty or not self._hider.visible.strip():
            return
        if self._live is None:
            self._end_stream()
            self._live = LiveTail(self.console, 6)
        self._live.update(self._hider.visible)

    def _replied(self, event: ModelReplied) -> None:
        shown = self._hider.visible.strip()
        self._hider = CallHider()
        if event.calls and event.text.strip():
            self._line(event.text.strip())
        elif not event.calls:
            self._unread = shown  # shown only if it turns out to be an unreadable call

    # -- each call: what, the approval, the outcome --------------------------------------------

    def _requested_(self, event: ToolRequested) -> None:
        self._requested[id(event.call)] = (event.tool, event.preview)
        if self.tty:
            self._line(f"▸ {call_line(event.call.name, event.call.arguments, event.tool)}", "bold")
        else:
            self._line(f"→ {event.call.name} {_short(event.call.arguments)}")
        kind = event.tool.kind
        if kind is Kind.EDIT or (kind is Kind.SHELL and (not self.tty or _long(event))):
            _preview(self, event.preview)  # the diff, or a command the call line could not show whole

    def _decided(self, event: ToolDecision) -> None:
        decision = event.decision
        if not decision.needed:
            return
        if not self.tty:
            self._line(f"  {decision.why}")
            return
        if not decision.allowed:
            self._refused.add(id(event.call))
        mark, style = ("✓", "green") if decision.allowed else ("✗", "red")
        self._line(f"  {mark} {decision.why}", style)

    def _observed(self, event: Observation) -> None:
        if not self.tty:
            first = event.text.strip().splitlines()[:6]
            more = len(event.text.strip().splitlines()) - len(first)
            text = "\n".join("  " + line for line in first) + (f"\n  … {more} more lines" if more > 0 else "")
            self._line(text)
            return
        if id(event.call) in self._refused:  # "Not done: the user declined": shown already
            return
        if event.call is None and self._unread:
            self._line(self._unread)
        if event.call is not None and id(event.call) not in self._requested:  # refused before asking
            self._line(f"▸ {call_line(event.call.name, event.call.arguments, None)}", "bold")
        tool, preview = self._requested.get(id(event.call), (None, ""))
        text = event.text.replace(FORMAT_REMINDER, "").strip()  # for the model, not the person
        headline, lines, good = outcome(tool, text, event.ok, preview)
        self._line(f"  {headline}", "" if good else "red")
        if lines:
            self._line("\n".join("    " + line for line in lines), "dim")

    def interrupted(self) -> None:
        """Ctrl-C: close the live area (it hides the cursor) and end the streamed line."""
        self._end_stream()

    def finish(self, event: Finished) -> None:
        self._end_stream()
        if event.reason != "answered":
            self.term.warn(event.reason)
        write_answer(self.term, event, self.json_mode)


def _preview(view: AgentView, diff: str) -> None:
    """A diff or a command for approval: highlighted on a colour terminal, else as it is."""
    if not view.tty:
        view.term.stderr.write(diff if diff.endswith("\n") else diff + "\n")
        view.term.stderr.flush()
        return
    from rich.syntax import Syntax

    lexer = "bash" if diff.startswith("$ ") else "diff"
    view.console.print(Syntax(diff.rstrip("\n"), lexer, theme="ansi_dark", background_color="default"))


def write_answer(term: Terminal, event: Finished, json_mode: bool) -> None:
    """The run's result on stdout: one JSON object, or the answer (Markdown on a TTY)."""
    if json_mode:
        import json

        stats = {
            "prompt_tokens": event.prompt_tokens,
            "reused_tokens": event.reused_tokens,
            "cached_tokens": event.cached_tokens,
        }
        result = {"answer": event.answer, "reason": event.reason, "steps": event.steps, "stats": stats}
        term.write(json.dumps(result) + "\n")
    elif event.answer:
        if term.markdown:
            term.markdown_block(event.answer)
        else:
            term.write(event.answer.rstrip("\n") + "\n")


def _long(event: ToolRequested) -> bool:
    """A shell command shown whole only when the call line could not (several lines, long)."""
    if not event.tool.key:
        return True
    command = str(event.call.arguments.get(event.tool.key, ""))
    return "\n" in command.strip() or len(command.strip()) > WIDE


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
