"""What a tool call and its result look like to a person following a run (view.py draws them):
one readable line per call (the tool and what it is about), and the result summed up (lines read,
a file created, an exit code and the last lines of output), long results folded with a count of
what is hidden. Pure: text in, text out; the model always gets the whole observation."""

from __future__ import annotations

import re

from .tools import Kind, Tool

KEEP = 4  # lines of a result shown before folding the rest
WIDE = 72  # characters of an argument shown in the call line

_READ = re.compile(r"(?P<path>.*) \((?P<total>\d+) lines\)")
_NUMBERED = re.compile(r" *(\d+)  ")
_WRITTEN = re.compile(r"(created|updated) (\S.*) \(\d+ bytes\)")
_STATUS = re.compile(r"\[(exit code -?\d+|timed out after [^(\]]*)")
_COUNTED = {"list_files": ("file", "files"), "search_files": ("match", "matches")}


def _one_line(value: object, wide: int = WIDE) -> str:
    text = str(value).strip()
    first, _, rest = text.partition("\n")
    if rest:
        first += " …"
    return first if len(first) <= wide else first[: wide - 1] + "…"


def call_line(name: str, arguments: dict, tool: Tool | None) -> str:
    """`read_file src/app.py`, `run_shell pytest -q`, `search_files TODO path=src`: the key
    argument's value, then the other short ones (long text is in the diff shown next)."""
    key = tool.key if tool is not None else None
    parts = [name]
    if key in arguments:
        parts.append(_one_line(arguments[key]))
    if tool is not None and tool.kind is Kind.EDIT and key in arguments:
        return " ".join(parts)  # the rest is in the diff
    for arg, value in arguments.items():
        text = str(value)
        if arg != key and "\n" not in text and len(text) <= 40:
            parts.append(f"{arg}={text}")
    return " ".join(parts)


def fold(lines: list[str], keep: int = KEEP, last: bool = False) -> list[str]:
    """At most `keep` lines (the first ones, or the `last`), and a line counting the rest."""
    if len(lines) <= keep + 1:
        return lines
    hidden = len(lines) - keep
    if last:
        return [f"… {hidden} earlier lines hidden", *lines[-keep:]]
    return [*lines[:keep], f"… {hidden} more lines hidden"]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def diff_counts(diff: str) -> tuple[int, int]:
    """Lines added and removed in a unified diff."""
    lines = diff.splitlines()
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    return added, removed


def outcome(tool: Tool | None, text: str, ok: bool, preview: str = "") -> tuple[str, list[str], bool]:
    """(the headline, the lines under it, whether it went well) for a tool's observation."""
    lines = text.strip("\n").splitlines() or [""]
    if not ok or tool is None:
        return lines[0], fold(lines[1:], KEEP - 1), ok
    if tool.kind is Kind.EDIT and (written := _WRITTEN.match(lines[0])):
        added, removed = diff_counts(preview)
        if written[1] == "created":
            return f"created {written[2]}, {_plural(added, 'line', 'lines')}", [], True
        return f"updated {written[2]} (+{added} −{removed})", [], True
    if tool.kind is Kind.SHELL and (status := _STATUS.match(lines[-1])):
        output = [x for x in lines[1:-1] if x.strip()]  # the first line repeats the command
        good = status[1] == "exit code 0"
        return status[1] + ("" if output else ", no output"), fold(output, last=True), good
    if (read := _READ.fullmatch(lines[0])) and len(lines) > 1 and _NUMBERED.match(lines[1]):
        numbers = [int(m[1]) for x in lines[1:] if (m := _NUMBERED.match(x))]
        total = int(read["total"])
        if len(numbers) == total:
            return f"read {_plural(total, 'line', 'lines')}", [], True
        return f"read lines {numbers[0]}-{numbers[-1]} of {total}", [], True
    if tool.name in _COUNTED and not lines[0].startswith("no "):
        found = [x for x in lines if not x.startswith("[")]
        return _plural(len(found), *_COUNTED[tool.name]), fold(lines, KEEP - 1), True
    return lines[0], fold(lines[1:], KEEP - 1), True
