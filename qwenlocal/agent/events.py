"""What the agent loop tells its listeners: the view (view.py) and the transcript (transcript.py).

The loop emits each event once, to every listener, along with the engine's own events
(TextDelta, ReasoningDelta, Notice, Done) while the model answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.toolcall import ToolCall
from ..events import Done, Notice
from .approval import Decision
from .tools import Tool


@dataclass(frozen=True)
class TaskGiven:
    task: str
    workspace: str
    protection: str  # how shell commands are confined (sandbox.Shell.protection)


@dataclass(frozen=True)
class StepStarted:
    step: int


@dataclass(frozen=True)
class ModelReplied:
    """The model's reply, parsed: the text before any call, and the calls (none: a final answer)."""

    done: Done
    text: str
    calls: list[ToolCall]


@dataclass(frozen=True)
class ToolRequested:
    call: ToolCall
    tool: Tool
    preview: str  # the diff or the command


@dataclass(frozen=True)
class ToolDecision:
    call: ToolCall
    decision: Decision


@dataclass(frozen=True)
class Observation:
    call: ToolCall | None
    text: str
    ok: bool


@dataclass(frozen=True)
class ContextShortened(Notice):
    """Older tool results were shortened to keep the conversation inside the context (context.py).
    A Notice, so a view that knows no better shows its text as one line."""

    results: int  # how many
    characters: int  # removed from them in all
    tokens_before: int  # the prompt's tokens before (the context's size when it did not fit at all)
    tokens_after: int
    n_ctx: int


@dataclass(frozen=True)
class ContextGrown(Notice):
    """The context grew (memory allowed it) instead of older results being shortened."""

    before: int
    after: int


@dataclass(frozen=True)
class Finished:
    answer: str
    reason: str  # "answered", or why it stopped
    steps: int
    # how the prompts were read, summed over the steps (statistics: not part of the result's identity)
    prompt_tokens: int = field(default=0, compare=False)
    reused_tokens: int = field(default=0, compare=False)  # of those, not evaluated: the context held them
    cached_tokens: int = field(default=0, compare=False)  # of those, restored from the disk's state cache


AgentEvent = (
    TaskGiven
    | StepStarted
    | ModelReplied
    | ToolRequested
    | ToolDecision
    | Observation
    | ContextShortened
    | ContextGrown
    | Finished
)
