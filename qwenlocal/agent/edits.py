"""File edits, planned before they happen: the tools of kind "edit" return a Change, which the user
approves from its diff, undo snapshots, and only then is applied (Workspace.apply).

An edit works on bytes, so every byte it does not replace stays as it was (encoding, CRLF line
endings; confine.write keeps the mode bits). Applying replaces the file instead of writing into it,
so a hard link to a file outside keeps its old content, and the Change's note says so.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .confine import ToolError

if TYPE_CHECKING:
    from .workspace import Workspace

EDIT_BYTES = 8 * 1024 * 1024  # larger files are edited with run_shell, not by diff and approval


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


def _target(ws: Workspace, path: str) -> tuple[Path, bytes | None]:
    """The file an edit is about, and its bytes (None: it does not exist yet)."""
    full = ws.resolve(path)
    if full.is_dir():
        raise ToolError(f"{ws.rel(full)} is a directory")
    if not full.exists():
        return full, None
    data, size = ws.text(full, EDIT_BYTES)
    if size > EDIT_BYTES:
        raise ToolError(
            f"{ws.rel(full)} is too large to edit here ({size:,} bytes); use run_shell (sed, patch)"
        )
    return full, data


def plan_write(ws: Workspace, path: str, content) -> Change:
    full, before = _target(ws, path)
    if not isinstance(content, str):
        raise ToolError("write_file needs content (text)")
    after = content.encode()
    if _is_crlf(before) and b"\r\n" not in after:
        after = _crlf(after)  # the file keeps its line endings
    return Change(full, before, after, _links_note(ws, full))


def plan_edit(ws: Workspace, path: str, old, new) -> Change:
    full, before = _target(ws, path)
    if before is None:
        raise ToolError(f"no such file: {ws.rel(full)}")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise ToolError("edit_file needs old_text (non-empty) and new_text")
    old_b, new_b = old.encode(), new.encode()
    count = before.count(old_b)
    if count == 0 and "\n" in old and b"\r\n" in before:  # read_file shows lines without \r
        old_b, new_b = _crlf(old_b), _crlf(new_b)
        count = before.count(old_b)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        why = f"old_text {where} in {ws.rel(full)}; it must match exactly once (read the file first)"
        try:
            before.decode("utf-8")
        except UnicodeDecodeError:
            why += "; the file is not valid UTF-8 (bad bytes are shown as \ufffd and cannot match)"
        raise ToolError(why)
    return Change(full, before, before.replace(old_b, new_b, 1), _links_note(ws, full))


def _links_note(ws: Workspace, path: Path) -> str:
    links = path.stat().st_nlink if path.is_file() else 1
    if links < 2:
        return ""
    return (
        f"{ws.rel(path)} has {links - 1} other hard link(s), perhaps outside the workspace: "
        "the file is replaced by a new one, so they keep the old content"
    )
