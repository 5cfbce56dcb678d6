"""The agent's tools, confined to a workspace. Names and parameters are a stable interface:

    read_file(path, start_line?, end_line?)   write_file(path, content)
    edit_file(path, old_text, new_text)       list_files(pattern?)
    search_files(pattern, path?)              run_shell(command, timeout?)

Every path is resolved inside the workspace (confine.py): `..`, absolute paths elsewhere, symlinks
that lead out or loop and device files are refused with an observation the model can read. Each
tool is bounded: bytes read, entries listed, seconds searched, characters returned.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from itertools import islice
from pathlib import Path

from . import confine
from .confine import ToolError
from .sandbox import Shell
from .search import search

MAX_READ_LINES = 400
MAX_OUTPUT = 12_000  # characters of any observation
MAX_LIST = 300
READ_BYTES = 8 * 1024 * 1024  # read_file looks at most this far into a file
EDIT_BYTES = 8 * 1024 * 1024  # larger files are edited with run_shell, not by diff and approval

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


def cap(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def _is_crlf(data: bytes | None) -> bool:
    return bool(data) and b"\r\n" in data and data.count(b"\n") == data.count(b"\r\n")


@dataclass(frozen=True)
class Change:
    """What an edit would do: the file, its bytes before (None: new file) and after, and a note
    the user and the model must see (a hard link that keeps the old content)."""

    path: Path
    before: bytes | None
    after: bytes
    note: str = ""

    def diff(self, root: Path) -> str:
        name = self.path.relative_to(root).as_posix()
        lines = difflib.unified_diff(
            (self.before or b"").decode("utf-8", "replace").splitlines(keepends=True),
            self.after.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile="/dev/null" if self.before is None else f"a/{name}",
            tofile=f"b/{name}",
        )
        text = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )
        return f"[{self.note}]\n{text}" if self.note else text


class Workspace:
    def __init__(self, root: Path, shell: Shell) -> None:
        self.root = Path(root).resolve()
        self.shell = shell

    def resolve(self, given: str) -> Path:
        """A path inside the workspace, or ToolError saying why not."""
        return confine.resolve(self.root, given)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def _bytes(self, path: Path, limit: int) -> tuple[bytes, int]:
        """The start of a text file (at most `limit` bytes) and its size; binary files refused."""
        if path.is_dir():
            raise ToolError(f"{self.rel(path)} is a directory")
        if not path.exists():
            raise ToolError(f"no such file: {self.rel(path)}")
        data, size = confine.read(self.root, self.rel(path), limit)
        if b"\x00" in data[:8192]:
            raise ToolError(f"{self.rel(path)} is a binary file")
        return data, size

    # -- planning changes (shown for approval before they happen) -------------------------

    def change(self, name: str, args: dict) -> Change:
        path = self.resolve(args.get("path", ""))
        if path.is_dir():
            raise ToolError(f"{self.rel(path)} is a directory")
        before = self._before(path) if path.exists() else None
        if name == "write_file":
            content = args.get("content")
            if not isinstance(content, str):
                raise ToolError("write_file needs content (text)")
            after = content.encode()
            if _is_crlf(before) and b"\r\n" not in after:
                after = _crlf(after)  # the file keeps its line endings
        else:
            if before is None:
                raise ToolError(f"no such file: {self.rel(path)}")
            after = self._edit(path, before, args.get("old_text"), args.get("new_text"))
        return Change(path, before, after, self._links_note(path))

    def _before(self, path: Path) -> bytes:
        data, size = self._bytes(path, EDIT_BYTES)
        if size > EDIT_BYTES:
            raise ToolError(
                f"{self.rel(path)} is too large to edit here ({size:,} bytes); use run_shell (sed, patch)"
            )
        return data

    def _edit(self, path: Path, before: bytes, old, new) -> bytes:
        """The edit made on bytes, so every byte it does not replace stays as it was."""
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ToolError("edit_file needs old_text (non-empty) and new_text")
        old_b, new_b = old.encode(), new.encode()
        count = before.count(old_b)
        if count == 0 and "\n" in old and b"\r\n" in before:  # read_file shows lines without \r
            old_b, new_b = _crlf(old_b), _crlf(new_b)
            count = before.count(old_b)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            why = f"old_text {where} in {self.rel(path)}; it must match exactly once (read the file first)"
            try:
                before.decode("utf-8")
            except UnicodeDecodeError:
                why += "; the file is not valid UTF-8 (bad bytes are shown as \ufffd and cannot match)"
            raise ToolError(why)
        return before.replace(old_b, new_b, 1)

    def _links_note(self, path: Path) -> str:
        links = path.stat().st_nlink if path.is_file() else 1
        if links < 2:
            return ""
        return (
            f"{self.rel(path)} has {links - 1} other hard link(s), perhaps outside the workspace: "
            "the file is replaced by a new one, so they keep the old content"
        )

    def apply(self, change: Change) -> str:
        confine.write(self.root, self.rel(change.path), change.after)
        verb = "created" if change.before is None else "updated"
        note = f"[{change.note}]\n" if change.note else ""
        diff = cap(change.diff(self.root).removeprefix(note))
        return f"{verb} {self.rel(change.path)} ({len(change.after)} bytes)\n{note}{diff}"

    # -- read-only tools ------------------------------------------------------------------

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        data, size = self._bytes(self.resolve(path), READ_BYTES)
        if size > len(data):  # the last line may be cut: drop it
            data = data[: data.rfind(b"\n") + 1]
        total = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        start = max(int(start_line or 1), 1)
        end = min(int(end_line or total), total, start + MAX_READ_LINES - 1)
        lines = islice(io.BytesIO(data), start - 1, max(end, start - 1))  # no list of every line
        shown = (line.rstrip(b"\r\n").decode("utf-8", "replace") for line in lines)
        body = "\n".join(f"{n:>5}  {line}" for n, line in enumerate(shown, start))
        more = f"\n[lines {end + 1}-{total} not shown: ask with start_line]" if end < total else ""
        if size > len(data):
            more += (
                f"\n[the file is {size:,} bytes; read_file reads its first {total:,} lines only: "
                "use run_shell (sed -n, tail, grep) for the rest]"
            )
        return cap(f"{path} ({total} lines)\n{body}{more}")

    def list_files(self, pattern: str | None = None) -> str:
        pattern = pattern or "**/*"
        if ".." in Path(pattern).parts or Path(pattern).is_absolute():
            raise ToolError("refused: the pattern must be relative to the workspace, without '..'")
        entries, cut = confine.walk(self.root)
        files = [rel for rel, kind in entries if self._listed(rel, kind) and _matches(rel, pattern)]
        shown = files[:MAX_LIST]
        more = f"\n[{len(files) - MAX_LIST} more not shown]" if len(files) > MAX_LIST else ""
        if cut:
            more += (
                f"\n[stopped after {confine.WALK_LIMIT:,} entries: give a narrower pattern or use run_shell]"
            )
        return ("\n".join(shown) + more) if files else f"no files match {pattern}{more}"

    def _listed(self, rel: str, kind: str) -> bool:
        """Files, and links to files inside the workspace (never a link out, a loop or a device)."""
        if kind == "link":
            try:
                real = (self.root / rel).resolve()
            except (RuntimeError, OSError):
                return False
            return self.root in real.parents and real.is_file()
        return kind == "file"

    def search_files(self, pattern: str, path: str | None = None) -> str:
        return search(self.root, self.resolve(path) if path else self.root, pattern)

    def run_shell(self, command: str, timeout: int | None = None) -> str:
        if not isinstance(command, str) or not command.strip():
            raise ToolError("run_shell needs a command")
        result = self.shell.run(command, self.root, timeout=min(int(timeout or 60), 600))
        return cap(result.describe())
