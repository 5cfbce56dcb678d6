"""Sections of BENCHMARKS.md that one `--only` mode measures alone and writes in place."""

from __future__ import annotations


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
