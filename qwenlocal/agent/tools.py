"""The agent's tools in one table. Names and parameters are a stable interface:

    read_file(path, start_line?, end_line?)   write_file(path, content)
    edit_file(path, old_text, new_text)       list_files(pattern?)
    search_files(pattern, path?)              run_shell(command, timeout?)

Each entry says everything the rest of the agent needs: the JSON schema offered to the model is
derived from it, its kind decides approval and undo (read: never asks; edit: its method returns a
Change that is shown as a diff, approved, snapshotted, then applied; shell: asks, snapshots the
workspace, runs), its parameters say which arguments are accepted and with which JSON type, and
`key` names the argument that says what a call is about (shown to the user).

Adding a tool is one entry here plus one method of the same name on Workspace (workspace.py).
Tools from MCP servers (mcp.py) join this table at run time as `SERVER__tool` entries of kind
shell, each carrying the function that calls its server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .confine import ToolError
from .workspace import Workspace

__all__ = ["SCHEMAS", "TOOLS", "Kind", "Param", "Tool", "ToolError", "Workspace", "by_name"]


class Kind(Enum):
    READ = "read"  # looks only: never needs approval
    EDIT = "edit"  # its method plans a Change; approved from the diff, snapshotted, applied
    SHELL = "shell"  # a command: approved, the whole workspace snapshotted, then run


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"  # the JSON type of its value: "string", "integer", ...
    required: bool = False
    description: str = ""

    def schema(self) -> dict:
        return {"type": self.type} | ({"description": self.description} if self.description else {})


@dataclass(frozen=True)
class Tool:
    name: str
    kind: Kind
    description: str
    params: tuple[Param, ...] = ()
    key: str | None = None  # the argument a call is about: path, command, pattern
    # A tool from an MCP server (mcp.py): the server's name, the function that calls it (instead
    # of the Workspace method) and its own JSON schema (instead of one derived from params).
    server: str | None = None
    run: Callable[..., str] | None = field(default=None, compare=False, repr=False)
    input_schema: dict | None = field(default=None, compare=False, repr=False)

    def schema(self) -> dict:
        """The function schema offered to the model (the chat template renders it)."""
        parameters: dict = {"type": "object", "properties": {p.name: p.schema() for p in self.params}}
        required = [p.name for p in self.params if p.required]
        if required:
            parameters["required"] = required
        if self.input_schema is not None:
            parameters = self.input_schema
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    def check(self, arguments: dict) -> dict:
        """The arguments, or ToolError naming the ones this tool does not take."""
        unknown = set(arguments) - {p.name for p in self.params}
        if unknown:
            takes = ", ".join(p.name for p in self.params) or "no arguments"
            raise ToolError(f"{self.name} takes {takes}; unknown: {', '.join(sorted(unknown))}")
        return dict(arguments)

    def preview(self, arguments: dict) -> str:
        """What the user is shown of a call that is not an edit (an edit shows its diff)."""
        if self.kind is Kind.SHELL and self.key:
            return f"$ {arguments.get(self.key, '')}"
        return f"{self.name}({json.dumps(arguments, ensure_ascii=False)})"


TOOLS: tuple[Tool, ...] = (
    Tool(
        "read_file",
        Kind.READ,
        "Read a text file in the workspace, or only lines start_line..end_line (1-based).",
        (
            Param("path", required=True, description="relative to the workspace"),
            Param("start_line", "integer"),
            Param("end_line", "integer"),
        ),
        key="path",
    ),
    Tool(
        "write_file",
        Kind.EDIT,
        "Create or overwrite a text file in the workspace with the given content.",
        (Param("path", required=True), Param("content", required=True)),
        key="path",
    ),
    Tool(
        "edit_file",
        Kind.EDIT,
        "Replace old_text, which must occur exactly once in the file, with new_text.",
        (Param("path", required=True), Param("old_text", required=True), Param("new_text", required=True)),
        key="path",
    ),
    Tool(
        "list_files",
        Kind.READ,
        "List files in the workspace matching a glob pattern (default: all files).",
        (Param("pattern"),),
        key="pattern",
    ),
    Tool(
        "search_files",
        Kind.READ,
        "Search file contents for a regular expression; optionally only under path.",
        (Param("pattern", required=True), Param("path")),
        key="pattern",
    ),
    Tool(
        "run_shell",
        Kind.SHELL,
        "Run a shell command in the workspace; returns its output and exit code.",
        (
            Param("command", required=True),
            Param("timeout", "integer", description="seconds (default 60, at most 600)"),
        ),
        key="command",
    ),
)


def by_name(tools: tuple[Tool, ...] = TOOLS) -> dict[str, Tool]:
    return {tool.name: tool for tool in tools}


SCHEMAS = [tool.schema() for tool in TOOLS]
