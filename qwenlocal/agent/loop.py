"""The agent loop: ask the model, parse its tool calls, approve, execute, repeat.

One `while` around query -> parse -> execute, in the style of mini-swe-agent. It ends when the
model answers without a tool call, or at a limit: the step budget, repeated identical calls, too
many unreadable calls in a row, or the user's "stop". Every step is written to the transcript,
and every file change is snapshotted first (see undo.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine import GenerateOptions
from ..events import Done, Event
from .approval import Approver
from .parse import FormatError, ToolCall, parse
from .tools import EDITS, NAMES, SCHEMAS, ToolError, Workspace
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


# -- what the loop tells the view --------------------------------------------------------------


@dataclass(frozen=True)
class StepStarted:
    step: int


@dataclass(frozen=True)
class ToolRequested:
    call: ToolCall
    preview: str  # the diff or the command


@dataclass(frozen=True)
class ToolDecision:
    call: ToolCall
    decision: str
    why: str


@dataclass(frozen=True)
class Observation:
    call: ToolCall | None
    text: str
    ok: bool


@dataclass(frozen=True)
class Finished:
    answer: str
    reason: str  # "answered", or why it stopped
    steps: int


AgentEvent = StepStarted | ToolRequested | ToolDecision | Observation | Finished


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
    ) -> None:
        self.engine, self.options, self.workspace = engine, options, workspace
        self.approver, self.run, self.emit, self.limits = approver, run, emit, limits
        prompt = SYSTEM.format(workspace=workspace.root)
        self.messages: list[dict] = [
            {"role": "system", "content": prompt + (f"\n\n{system}" if system else "")}
        ]

    def solve(self, task: str) -> Finished:
        self.messages.append({"role": "user", "content": task})
        self.run.log(
            "task", task=task, workspace=str(self.workspace.root), protection=self.workspace.shell.protection
        )
        format_errors = 0
        last_keys: list[str] = []
        for step in range(1, self.limits.max_steps + 1):
            self.emit(StepStarted(step))
            done = self._ask()
            try:
                text, calls = parse(done.answer)
            except FormatError as error:
                format_errors += 1
                self._assistant(done, done.answer, [])
                self._observe(None, f"Error: {error}", ok=False, step=step)
                if format_errors >= self.limits.max_format_errors:
                    return self._finish("", f"stopped: {format_errors} unreadable tool calls in a row", step)
                continue
            format_errors = 0
            self._assistant(done, text, calls)
            if not calls:
                return self._finish(text, "answered", step)
            for call in calls:
                last_keys = (last_keys + [call.key()])[-self.limits.max_repeats :]
                if len(last_keys) == self.limits.max_repeats and len(set(last_keys)) == 1:
                    return self._finish(
                        text,
                        f"stopped: the model repeated the same {call.name} call "
                        f"{self.limits.max_repeats} times",
                        step,
                    )
                if self._execute(call, step) == "stop":
                    return self._finish(text, "stopped by the user", step)
        return self._finish(
            "", f"stopped: the limit of {self.limits.max_steps} steps was reached", self.limits.max_steps
        )

    # -- steps -------------------------------------------------------------------------------

    def _ask(self) -> Done:
        done = None
        for event in self.engine.stream(self.messages, self.options, SCHEMAS):
            self.emit(event)
            if isinstance(event, Done):
                done = event
        return done

    def _assistant(self, done: Done, text: str, calls: list[ToolCall]) -> None:
        message = {"role": "assistant", "content": text}
        if done.reasoning:
            message["reasoning_content"] = done.reasoning
        if calls:
            message["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        self.messages.append(message)
        self.run.log(
            "assistant",
            content=text,
            reasoning=done.reasoning,
            raw=done.answer,
            tool_calls=[{"name": c.name, "arguments": c.arguments} for c in calls],
            stats=done.stats.as_dict(),
        )

    def _observe(self, call: ToolCall | None, text: str, ok: bool, step: int) -> None:
        self.messages.append({"role": "tool", "content": text})
        self.emit(Observation(call, text, ok))
        self.run.log(
            "tool_result",
            step=step,
            tool=call.name if call else None,
            arguments=call.arguments if call else None,
            ok=ok,
            result=text,
        )

    def _execute(self, call: ToolCall, step: int) -> str:
        if call.name not in NAMES:
            self._observe(
                call,
                f"Error: there is no tool '{call.name}'. The tools are: {', '.join(NAMES)}.",
                ok=False,
                step=step,
            )
            return "no"
        try:
            change = self.workspace.change(call.name, call.arguments) if call.name in EDITS else None
            preview = change.diff(self.workspace.root) if change else _describe(call)
            self.emit(ToolRequested(call, preview))
            decision, why = self.approver.decide(call.name, preview)
            self.emit(ToolDecision(call, decision, why))
            self.run.log(
                "approval",
                step=step,
                tool=call.name,
                decision=decision,
                why=why,
                diff=preview if change else None,
            )
            if decision != "yes":
                self._observe(call, f"Not done: {why}.", ok=False, step=step)
                return decision
            if change is not None:
                self.run.before_edit(step, change.path)
                result = self.workspace.apply(change)
            elif call.name == "run_shell":
                warning = self.run.before_shell(step)
                result = self.workspace.run_shell(**_args(call, ("command", "timeout")))
                result += f"\n[{warning}]" if warning else ""
            else:
                method = getattr(self.workspace, call.name)
                result = method(**_args(call, method.__code__.co_varnames[1 : method.__code__.co_argcount]))
        except ToolError as error:
            self._observe(call, f"Error: {error}", ok=False, step=step)
            return "no"
        except (TypeError, ValueError) as error:
            self._observe(call, f"Error: bad arguments for {call.name}: {error}", ok=False, step=step)
            return "no"
        self._observe(call, result, ok=True, step=step)
        return "yes"

    def _finish(self, answer: str, reason: str, steps: int) -> Finished:
        finished = Finished(answer, reason, steps)
        self.run.log("finished", answer=answer, reason=reason, steps=steps)
        self.emit(finished)
        return finished


def _args(call: ToolCall, allowed) -> dict:
    unknown = set(call.arguments) - set(allowed)
    if unknown:
        raise ToolError(f"{call.name} takes {', '.join(allowed)}; unknown: {', '.join(sorted(unknown))}")
    return dict(call.arguments)


def _describe(call: ToolCall) -> str:
    if call.name == "run_shell":
        return f"$ {call.arguments.get('command', '')}"
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


def workspace_path(given: str | None) -> Path:
    return Path(given or ".").expanduser().resolve()
