"""Sections of BENCHMARKS.md that one `--only` mode measures alone and writes in place."""

from __future__ import annotations

import json
from collections.abc import Callable


def replace_section(report: str, heading: str, lines: list[str], continues: tuple[str, ...]) -> str:
    """`report` with the section that starts at the line beginning with `heading` (and goes on
    over blank lines and lines starting with one of `continues`) replaced by `lines`; without
    such a section, `lines` are appended."""
    old = report.splitlines()
    if not any(line.startswith(heading) for line in old):
        return report.rstrip("\n") + "\n\n" + "\n".join(lines)
    start = next(i for i, line in enumerate(old) if line.startswith(heading))
    end = start + 1
    while end < len(old) and (not old[end] or old[end].startswith(continues)):
        end += 1
    return "\n".join(old[:start] + lines + old[end:]) + "\n"


def carry(old: str, new: str, sections: list[tuple[str, tuple[str, ...]]]) -> str:
    """`new` with the sections (heading, continues) of `old` that it lacks added at its end: a full
    run rewrites the report, and keeps what only an `--only` mode measures."""
    lines = old.splitlines()
    for heading, continues in sections:
        if any(line.startswith(heading) for line in new.splitlines()):
            continue
        start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
        if start is None:
            continue
        end = start + 1
        while end < len(lines) and (not lines[end] or lines[end].startswith(continues)):
            end += 1
        new = replace_section(new, heading, lines[start:end], continues).rstrip("\n") + "\n"
    return new


def save(args, splice: Callable[[str, list[str]], str], lines: list[str], **samples) -> None:
    """An `--only` mode's result: `lines` spliced into the report at `args.out`, and `samples` set
    in bench/results.json beside it, the rest of a full run's numbers kept."""
    args.out.write_text(splice(args.out.read_text() if args.out.exists() else "", lines).lstrip("\n"))
    path = args.out.parent / "bench" / "results.json"
    path.parent.mkdir(exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"models": []}
    data.update(samples)
    path.write_text(json.dumps(data, indent=1) + "\n")
