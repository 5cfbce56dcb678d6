"""The run's JSONL transcript, written from the same events the view shows.

One record per task, model reply, approval, tool result and end: `{"time", "type", ...}` with
type "task", "assistant", "approval", "tool_result", "context" (older results shortened for the
model; the records keep them whole) or "finished" (undo.Run.log writes them).
"""

from __future__ import annotations

from .events import (
    ContextGrown,
    ContextShortened,
    Finished,
    ModelReplied,
    Observation,
    StepStarted,
    TaskGiven,
    ToolDecision,
    ToolRequested,
)
from .tools import Kind
from .undo import Run


class Transcript:
    """A listener of the agent loop; remembers the step and the request a record belongs to."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.step: int | None = None
        self.requested: ToolRequested | None = None

    def __call__(self, event) -> None:
        log = self.run.log
        if isinstance(event, TaskGiven):
            log("task", task=event.task, workspace=event.workspace, protection=event.protection)
        elif isinstance(event, StepStarted):
            self.step = event.step
        elif isinstance(event, ModelReplied):
            log(
                "assistant",
                content=event.text,
                reasoning=event.done.reasoning,
                raw=event.done.answer,
                tool_calls=[{"name": c.name, "arguments": c.arguments} for c in event.calls],
                stats=event.done.stats.as_dict(),
            )
        elif isinstance(event, ToolRequested):
            self.requested = event
        elif isinstance(event, ToolDecision):
            request = self.requested
            edit = request is not None and request.call is event.call and request.tool.kind is Kind.EDIT
            log(
                "approval",
                step=self.step,
                tool=event.call.name,
                decision=event.decision.verdict.value,
                why=event.decision.why,
                diff=request.preview if edit else None,
            )
        elif isinstance(event, Observation):
            call = event.call
            log(
                "tool_result",
                step=self.step,
                tool=call.name if call else None,
                arguments=call.arguments if call else None,
                ok=event.ok,
                result=event.text,
            )
        elif isinstance(event, ContextShortened):
            log(
                "context",
                step=self.step,
                shortened=event.results,
                characters=event.characters,
                tokens_before=event.tokens_before,
                tokens_after=event.tokens_after,
                n_ctx=event.n_ctx,
            )
        elif isinstance(event, ContextGrown):
            log("context", step=self.step, grown_from=event.before, n_ctx=event.after)
        elif isinstance(event, Finished):
            log("finished", answer=event.answer, reason=event.reason, steps=event.steps)
