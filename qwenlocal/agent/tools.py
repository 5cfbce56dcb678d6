"""The agent's tools, confined to a workspace. Names and parameters are a stable interface:

    read_file(path, start_line?, end_line?)   write_file(path, content)
    edit_file(path, old_text, new_text)       list_files(pattern?)
    search_files(pattern, path?)              run_shell(command, timeout?)

Every path is resolved inside the workspace: `..`, absolute paths elsewhere, symlinks that lead
out and device files are refused with an observation the model can read. Output is capped.
"""

from __future__ import annotations

import difflib
import re
import stat
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from .sandbox import Shell

MAX_READ_LINES = 400
MAX_OUTPUT = 12_000  # characters of any observation
MAX_LIST = 300
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache"}

SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file in the workspace, or only lines start_line..end_line (1-based).",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "relative to the workspace"},
                    "start_line": {"type": "integer"},
                    "end_line": {"type": "integer"},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or overwrite a text file in the workspace with the given content.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace old_text, which must occur exactly once in the file, with new_text.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"},
                },
                "required": ["path", "old_text", "new_text"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_files",
            "description": "List files in the workspace matching a glob pattern (default: all files).",
            "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_files",
            "description": "Search file contents for a regular expression; optionally only under path.",
            "parameters": {
                "type": "object",
                "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
                "required": ["pattern"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_shell",
            "description": "Run a shell command in the workspace; returns its output and exit code.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout": {"type": "integer", "description": "seconds (default 60, at most 600)"},
                },
                "required": ["command"],
            },
        },
    },
]
NAMES = [s["function"]["name"] for s in SCHEMAS]
READ_ONLY = {"read_file", "list_files", "search_files"}
EDITS = {"write_file", "edit_file"}


def _matches(rel: str, pattern: str) -> bool:
    """Glob matching on workspace paths: `*.py` matches at any depth, `**/` any folders."""
    if "/" not in pattern:
        return fnmatch(rel.rsplit("/", 1)[-1], pattern)
    return fnmatch(rel, pattern) or (pattern.startswith("**/") and _matches(rel, pattern[3:]))


class ToolError(Exception):
    """A refusal or failure, reported to the model as the observation."""


def cap(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


@dataclass(frozen=True)
class Change:
    """What an edit would do: the file, its text before (None: new file) and after."""

    path: Path
    before: str | None
    after: str

    def diff(self, root: Path) -> str:
        name = self.path.relative_to(root).as_posix()
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile="/dev/null" if self.before is None else f"a/{name}",
            tofile=f"b/{name}",
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )


class Workspace:
    def __init__(self, root: Path, shell: Shell) -> None:
        self.root = Path(root).resolve()
        self.shell = shell

    # -- confinement ----------------------------------------------------------------------

    def resolve(self, given: str) -> Path:
        """A path inside the workspace, or ToolError saying why not."""
        if not isinstance(given, str) or not given.strip() or "\x00" in given:
            raise ToolError("a path is required")
        raw = Path(given.strip())
        if ".." in raw.parts:
            raise ToolError(f"refused: '{given}' uses '..'; paths must stay inside the workspace")
        full = raw if raw.is_absolute() else self.root / raw
        real = full.resolve()
        if real != self.root and self.root not in real.parents:
            why = (
                "leads outside the workspace through a symlink"
                if not raw.is_absolute()
                else "is outside the workspace"
            )
            raise ToolError(f"refused: '{given}' {why}; only files under the workspace can be used")
        if real.exists() and not (real.is_file() or real.is_dir()):
            raise ToolError(f"refused: '{given}' is a device, socket or pipe, not a regular file")
        return real

    def _text(self, path: Path) -> str:
        if not path.is_file():
            raise ToolError(f"no such file: {self.rel(path)}")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise ToolError(f"{self.rel(path)} is a binary file")
        return data.decode("utf-8", "replace")

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    # -- planning changes (shown for approval before they happen) -------------------------

    def change(self, name: str, args: dict) -> Change:
        path = self.resolve(args.get("path", ""))
        if name == "write_file":
            content = args.get("content")
            if not isinstance(content, str):
                raise ToolError("write_file needs content (text)")
            if path.is_dir():
                raise ToolError(f"{self.rel(path)} is a directory")
            before = self._text(path) if path.exists() else None
            return Change(path, before, content)
        old, new = args.get("old_text"), args.get("new_text")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ToolError("edit_file needs old_text (non-empty) and new_text")
        before = self._text(path)
        count = before.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise ToolError(
                f"old_text {where} in {self.rel(path)}; it must match exactly once (read the file first)"
            )
        return Change(path, before, before.replace(old, new, 1))

    def apply(self, change: Change) -> str:
        change.path.parent.mkdir(parents=True, exist_ok=True)
        change.path.write_text(change.after, encoding="utf-8")
        verb = "created" if change.before is None else "updated"
        return (
            f"{verb} {self.rel(change.path)} ({len(change.after)} characters)\n{cap(change.diff(self.root))}"
        )

    # -- read-only tools ------------------------------------------------------------------

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        lines = self._text(self.resolve(path)).splitlines()
        start = max(int(start_line or 1), 1)
        end = min(int(end_line or len(lines)), len(lines), start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        more = f"\n[lines {end + 1}-{len(lines)} not shown: ask with start_line]" if end < len(lines) else ""
        return cap(f"{path} ({len(lines)} lines)\n{body}{more}")

    def _walk(self, base: Path):
        for item in sorted(base.rglob("*")):
            rel = item.relative_to(self.root)
            if any(part in SKIP_DIRS for part in rel.parts):
                continue
            if item.is_symlink() and self.root not in item.resolve().parents:
                continue  # never follow a link out of the workspace
            mode = item.lstat().st_mode
            if stat.S_ISREG(mode) or (item.is_symlink() and item.is_file()):
                yield item

    def list_files(self, pattern: str | None = None) -> str:
        pattern = pattern or "**/*"
        if ".." in Path(pattern).parts or Path(pattern).is_absolute():
            raise ToolError("refused: the pattern must be relative to the workspace, without '..'")
        files = [self.rel(p) for p in self._walk(self.root) if _matches(self.rel(p), pattern)]
        shown = files[:MAX_LIST]
        more = f"\n[{len(files) - MAX_LIST} more not shown]" if len(files) > MAX_LIST else ""
        return ("\n".join(shown) + more) if files else f"no files match {pattern}"

    def search_files(self, pattern: str, path: str | None = None) -> str:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from None
        base = self.resolve(path) if path else self.root
        targets = [base] if base.is_file() else list(self._walk(base))
        hits = []
        for file in targets:
            try:
                text = self._text(file)
            except ToolError:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{self.rel(file)}:{n}: {line.strip()[:200]}")
                    if len(hits) >= 100:
                        return "\n".join(hits) + "\n[stopped at 100 matches]"
        return "\n".join(hits) if hits else f"no matches for {pattern}"

    def run_shell(self, command: str, timeout: int | None = None) -> str:
        if not isinstance(command, str) or not command.strip():
            raise ToolError("run_shell needs a command")
        result = self.shell.run(command, self.root, timeout=min(int(timeout or 60), 600))
        return cap(result.describe())
