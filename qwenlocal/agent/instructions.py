"""Project instructions: the nearest AGENTS.md (and QWEN.md, which Qwen Code reads) from the
workspace up to its repository's root go into the agent's system prompt.

Only files inside the workspace's repository (the nearest folder above it with `.git`; the
workspace itself outside a repository) are read, and a link that leads out of it is not followed.
The text is capped (MAX_TOKENS); a longer one is cut with a notice, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NAMES = ("AGENTS.md", "QWEN.md")
MAX_TOKENS = 8192
READ_BYTES = 256 * 1024  # looked at, at most, per file
_CHARS_PER_TOKEN = 6  # a generous bound: text is cut to this before it is counted


@dataclass(frozen=True)
class Instructions:
    files: tuple[str, ...]  # as the user knows them: relative to the workspace ("../AGENTS.md")
    text: str  # the block added to the system prompt
    tokens: int
    cut: bool = False  # longer than the cap: cut, with a notice in the text

    def header(self) -> str:
        """The run's header line: `instructions: AGENTS.md, 1,240 tokens`."""
        cut = f" (cut to fit the cap of {MAX_TOKENS:,})" if self.cut else ""
        return f"instructions: {', '.join(self.files)}, {self.tokens:,} tokens{cut}"


def repository_root(workspace: Path) -> Path:
    """The nearest folder from the workspace up that has `.git`; the workspace outside one."""
    workspace = workspace.resolve()
    for folder in (workspace, *workspace.parents):
        if (folder / ".git").exists():
            return folder
    return workspace


def find(workspace: Path) -> list[Path]:
    """The nearest file of each name, from the workspace up to the repository's root."""
    workspace = workspace.resolve()
    root = repository_root(workspace)
    folders = [workspace, *[p for p in workspace.parents if p.is_relative_to(root)]]
    found = []
    for name in NAMES:
        for folder in folders:
            path = folder / name
            if path.is_file() and path.resolve().is_relative_to(root):  # no link out of the repo
                found.append(path)
                break
    return found


def _read(path: Path) -> str:
    with path.open("rb") as f:
        return f.read(READ_BYTES).decode("utf-8", errors="replace").strip()


def load(workspace: Path, count: Callable[[str], int], limit: int = MAX_TOKENS) -> Instructions | None:
    """The instructions for `workspace`, or None when there are none; `count` gives a text's tokens."""
    workspace = workspace.resolve()
    paths, parts, names = find(workspace), [], []
    for path in paths:
        try:
            text = _read(path)
        except OSError:
            continue
        if text:
            name = Path(*[".."] * _up(workspace, path.parent), path.name).as_posix()
            names.append(name)
            parts.append(f"## {name}\n\n{text}")
    if not parts:
        return None
    intro = "Project instructions, from the repository's own files; follow them:\n\n"
    body = "\n\n".join(parts)
    cap = limit * _CHARS_PER_TOKEN
    tokens = _safe_count(count, body[:cap])
    if len(body) <= cap and tokens <= limit:
        return Instructions(tuple(names), intro + body, tokens)
    cut = body[:cap]
    while tokens > limit and cut:
        cut = cut[: int(len(cut) * limit / tokens * 0.95)]
        tokens = _safe_count(count, cut)
    notice = f"\n\n[The instructions were cut here, at {limit:,} tokens: the rest was left out.]"
    return Instructions(tuple(names), intro + cut + notice, tokens, cut=True)


def _up(workspace: Path, folder: Path) -> int:
    return len(workspace.parts) - len(folder.parts)


def _safe_count(count: Callable[[str], int], text: str) -> int:
    """Tokens of `text`; a text too long for the counter counts as too many (it is then cut)."""
    try:
        return count(text)
    except Exception:  # noqa: BLE001 - e.g. longer than the context: more than any cap
        return 10**9 if text else 0
