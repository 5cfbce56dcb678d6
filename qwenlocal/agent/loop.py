"""The agent loop: ask the model, parse its tool calls, approve, execute, repeat.

One `for` around query -> parse -> execute, in the style of mini-swe-agent. It ends when the
model answers without a tool call, or at a limit: the step budget, repeated identical calls, too
many unreadable calls in a row, a conversation that no longer fits the context even with its older
tool results shortened (context.py), or the user's "stop" (a small exception, Stopped, carries why).
Every event goes to each listener: the transcript (transcript.py) and the caller's view. Every
file change is snapshotted first (see undo.py). What a tool is and how it runs comes from its
entry in the table (tools.py); the loop has no tool's name in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine import GenerateOptions
from ..engine.base import instructions
from ..engine.toolcall import ToolCall, parse
from ..events import Done, Event
from .approval import Approver, Verdict
from .context import ContextBudget, ContextFull
from .events import (
    AgentEvent,
    Finished,
    ModelReplied,
    Observation,
    StepStarted,
    TaskGiven,
    ToolDecision,
    ToolRequested,
)
from .tools import TOOLS, Kind, Tool, ToolError, Workspace, by_name
from .transcript import Transcript
from .undo import Run

SYSTEM = (
    "You are a careful coding agent working in the directory {workspace}. Use the tools to look at "
    "files, change them and run commands there; paths are relative to that directory. Read a file "
    "before you edit it. Make one step at a time and check the result. When the task is done, or "
    "cannot be done, reply with a short summary and no tool call."
)


@dataclass(frozen=True)
class Limits:
    max_steps: int = 25
    max_format_errors: int = 3  # unreadable calls in a row
    max_repeats: int = 3  # the same call (name and arguments) in a row


class Stopped(Exception):
    """Ends the run before the model answers: why, and the text the model wrote before its calls."""

    def __init__(self, reason: str, answer: str = "") -> None:
        super().__init__(reason)
        self.reason, self.answer = reason, answer


class Agent:
    def __init__(
        self,
        engine,
        options: GenerateOptions,
        workspace: Workspace,
        approver: Approver,
        run: Run,
        emit: Callable[[AgentEvent | Event], None],
        limits: Limits = Limits(),
        system: str | None = None,
        tools: tuple[Tool, ...] = TOOLS,
    ) -> None:
        self.engine, self.options, self.workspace = engine, options, workspace
        self.approver, self.run, self.limits = approver, run, limits
        self.listeners = [Transcript(run), emit]  # the record is written before the view shows it
        self.tools, self.schemas = by_name(tools), [tool.schema() for tool in tools]
        self.budget = ContextBudget(engine, options.think, self.schemas, options.max_tokens)
        self.tokens = [0, 0, 0]  # prompt, reused and restored tokens, over the steps
        prompt = SYSTEM.format(workspace=workspace.root)
        self.messages: list[dict] = [
            {"role": "system", "content": prompt + (f"\n\n{system}" if system else "")}
        ]
        self._format_errors, self._recent = 0, []

    def emit(self, event: AgentEvent | Event) -> None:
        for listener in self.listeners:
            listener(event)

    def solve(self, task: str) -> Finished:
        self.messages.append({"role": "user", "content": task})
        self.emit(TaskGiven(task, str(self.workspace.root), self.workspace.shell.protection))
        self._format_errors, self._recent = 0, []
        for step in range(1, self.limits.max_steps + 1):
            self.emit(StepStarted(step))
            try:
                answer = self._step(step)
            except Stopped as stop:
                return self._finish(stop.answer, stop.reason, step)
            if answer is not None:
                return self._finish(answer, "answered", step)
        return self._finish(
            "", f"stopped: the limit of {self.limits.max_steps} steps was reached", self.limits.max_steps
        )

    # -- one step: query -> parse -> execute ---------------------------------------------------

    def _step(self, step: int) -> str | None:
        """The final answer, or None when the model called tools (or could not be read)."""
        self._fit_context()
        done = self._query()
        text, calls, error = parse(done.answer, self.schemas)
        if error and not calls:  # nothing in the reply could be read
            self._reply(done, done.answer, [])
            self._observe(None, f"Error: {error}", ok=False)
            self._format_errors += 1
            if self._format_errors >= self.limits.max_format_errors:
                raise Stopped(f"stopped: {self._format_errors} unreadable tool calls in a row") from None
            return None
        self._format_errors = 0
        self._reply(done, text, calls)
        if not calls:
            return text
        for call in calls:
            self._check_repeats(call, text)
            if self._execute(call, step) is Verdict.STOP:
                raise Stopped("stopped by the user", text)
        if error:  # a block beside the calls that ran could not be read
            self._observe(None, f"Error: {error}", ok=False)
        return None

    def _fit_context(self) -> None:
        """Shorten older tool results when the conversation nears the context's size (context.py)."""
        try:
            shortened = self.budget.fit(self.messages)
        except ContextFull as full:
            raise Stopped(str(full)) from None
        if shortened is not None:
            self.emit(shortened)

    def _query(self) -> Done:
        done = None
        keep = [instructions(self.messages)]  # the system prompt and tools: the next run starts there
        for event in self.engine.stream(self.messages, self.options, self.schemas, keep=keep):
            self.emit(event)
            if isinstance(event, Done):
                done = event
                self.tokens = [a + b for a, b in zip(self.tokens, self._counts(done.stats), strict=True)]
        return done

    @staticmethod
    def _counts(stats) -> tuple[int, int, int]:
        return stats.prompt_tokens, stats.reused_tokens, stats.cached_tokens

    def _reply(self, done: Done, text: str, calls: list[ToolCall]) -> None:
        message = {"role": "assistant", "content": text}
        if done.reasoning:
            message["reasoning_content"] = done.reasoning
        if calls:
            message["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        self.messages.append(message)
        self.emit(ModelReplied(done, text, calls))

    def _check_repeats(self, call: ToolCall, text: str) -> None:
        limit = self.limits.max_repeats
        self._recent = (self._recent + [call.key()])[-limit:]
        if len(self._recent) == limit and len(set(self._recent)) == 1:
            raise Stopped(f"stopped: the model repeated the same {call.name} call {limit} times", text)

    def _observe(self, call: ToolCall | None, text: str, ok: bool) -> None:
        image = getattr(text, "image", None)  # read_file of an image (workspace.ImageRead)
        if image is not None:
            from ..images import with_images

            text = str(text)
            self.messages.append({"role": "tool", "content": with_images(text, [image])})
        else:
            self.messages.append({"role": "tool", "content": text})
        self.emit(Observation(call, text, ok))

    # -- executing a call, as its table entry says -----------------------------------------------

    def _execute(self, call: ToolCall, step: int) -> Verdict:
        tool = self.tools.get(call.name)
        if tool is None:
            names = ", ".join(self.tools)
            self._observe(call, f"Error: there is no tool '{call.name}'. The tools are: {names}.", ok=False)
            return Verdict.NO
        try:
            arguments = tool.check(call.arguments)
            method = tool.run or getattr(self.workspace, tool.name)  # an MCP tool brings its own
            change = method(**arguments) if tool.kind is Kind.EDIT else None
            preview = change.diff(self.workspace.root) if change else tool.preview(arguments)
            self.emit(ToolRequested(call, tool, preview))
            decision = self.approver.decide(tool, preview)
            self.emit(ToolDecision(call, decision))
            if not decision.allowed:
                self._observe(call, f"Not done: {decision.why}.", ok=False)
                return decision.verdict
            if change is not None:
                self.run.before_edit(step, change.path)
                result = self.workspace.apply(change)
            else:
                warning = self.run.before_shell(step) if tool.kind is Kind.SHELL else None
                result = method(**arguments)  # a str (an image read keeps its type: no warning)
                result = result + f"\n[{warning}]" if warning else result
        except ToolError as error:
            self._observe(call, f"Error: {error}", ok=False)
            return Verdict.NO
        except (TypeError, ValueError) as error:
            self._observe(call, f"Error: bad arguments for {call.name}: {error}", ok=False)
            return Verdict.NO
        self._observe(call, result, ok=True)
        return Verdict.YES

    def _finish(self, answer: str, reason: str, steps: int) -> Finished:
        finished = Finished(answer, reason, steps, *self.tokens)
        self.emit(finished)
        return finished


def workspace_path(given: str | None) -> Path:
    return Path(given or ".").expanduser().resolve()
