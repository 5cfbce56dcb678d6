"""Who says yes to a change: the user (default), `--auto-edit` (file edits), or `--yes` (all).

Reading never asks. Writing, editing and shell commands ask on a terminal; when stdin is not a
terminal and the user did not say --yes, they are refused and reported, never run silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .tools import EDITS, READ_ONLY

ASK, AUTO_EDIT, YES = "ask", "auto-edit", "yes"


@dataclass
class Approver:
    mode: str = ASK
    interactive: bool = True
    ask: Callable[[str, str], str] | None = None  # (tool, preview) -> "y" / "n" / "a" / "s"
    always: set[str] = field(default_factory=set)

    def decide(self, tool: str, preview: str) -> tuple[str, str]:
        """("yes" | "no" | "stop", why)."""
        if tool in READ_ONLY:
            return "yes", "reading needs no approval"
        if self.mode == YES:
            return "yes", "--yes"
        if self.mode == AUTO_EDIT and tool in EDITS:
            return "yes", "--auto-edit"
        if tool in self.always:
            return "yes", f"always allowed for {tool} in this run"
        if not self.interactive or self.ask is None:
            return "no", "not approved: stdin is not a terminal (use --yes, or --auto-edit for file edits)"
        answer = self.ask(tool, preview)
        if answer == "a":
            self.always.add(tool)
            return "yes", f"approved, and always for {tool} in this run"
        if answer == "y":
            return "yes", "approved"
        if answer == "s":
            return "stop", "the user stopped the agent"
        return "no", "the user declined"
