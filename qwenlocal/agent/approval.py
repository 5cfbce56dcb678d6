"""Who says yes to a change: the user (default), `--auto-edit` (file edits), `--auto-mcp` (tools
from MCP servers, otherwise asked like a shell command), or `--yes` (all).

Reading never asks. Writing, editing and shell commands ask on a terminal; when stdin is not a
terminal and the user did not say --yes, they are refused and reported, never run silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .tools import Kind, Tool

ASK, AUTO_EDIT, YES = "ask", "auto-edit", "yes"


class Verdict(Enum):
    YES = "yes"  # run it
    NO = "no"  # do not run it; the model is told why and goes on
    STOP = "stop"  # do not run it, and end the run


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str
    needed: bool = True  # False: the tool only reads, so there was nothing to approve

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.YES


@dataclass
class Approver:
    mode: str = ASK
    interactive: bool = True
    ask: Callable[[str, str], str] | None = None  # (tool, preview) -> "y" / "n" / "a" / "s"
    always: set[str] = field(default_factory=set)
    auto_mcp: bool = False  # --auto-mcp: tools from MCP servers run without asking

    def decide(self, tool: Tool, preview: str) -> Decision:
        if tool.kind is Kind.READ:
            return Decision(Verdict.YES, "reading needs no approval", needed=False)
        if self.mode == YES:
            return Decision(Verdict.YES, "--yes")
        if self.mode == AUTO_EDIT and tool.kind is Kind.EDIT:
            return Decision(Verdict.YES, "--auto-edit")
        if self.auto_mcp and tool.server is not None:
            return Decision(Verdict.YES, "--auto-mcp")
        if tool.name in self.always:
            return Decision(Verdict.YES, f"always allowed for {tool.name} in this run")
        if not self.interactive or self.ask is None:
            why = "not approved: stdin is not a terminal (use --yes, or --auto-edit for file edits)"
            return Decision(Verdict.NO, why)
        answer = self.ask(tool.name, preview)
        if answer == "a":
            self.always.add(tool.name)
            return Decision(Verdict.YES, f"approved, and always for {tool.name} in this run")
        if answer == "y":
            return Decision(Verdict.YES, "approved")
        if answer == "s":
            return Decision(Verdict.STOP, "the user stopped the agent")
        return Decision(Verdict.NO, "the user declined")
