"""search_files, run in a child process with a hard time limit.

Python's `re` cannot be interrupted, and a pattern such as `(a+)+$` backtracks for longer than
anyone waits, so the search runs in a child Python that is killed when time is up. The child reads
through confine.py like every tool, and only so many bytes per file and in all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from . import confine
from .confine import ToolError

SECONDS = 10
FILE_BYTES = 2 * 1024 * 1024  # bytes read from the start of each file
TOTAL_BYTES = 64 * 1024 * 1024  # bytes read in all
MAX_HITS = 100
MAX_PATTERN = 1000  # characters
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from qwenlocal.agent.search import main; main()"


def search(root: Path, base: Path, pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise ToolError(f"search_files needs a pattern of 1 to {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression: {exc}") from None
    request = json.dumps({"root": str(root), "base": str(base), "pattern": pattern})
    package_parent = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, package_parent],
            input=request.encode(),
            capture_output=True,
            timeout=SECONDS,
            env={"PYTHONIOENCODING": "utf-8"},
        )
    except subprocess.TimeoutExpired:  # run() has killed the child by now
        raise ToolError(
            f"the search timed out after {SECONDS}s and was stopped; the pattern may backtrack "
            "badly (like (a+)+): use a simpler one, or narrow it with path"
        ) from None
    if done.returncode != 0:
        raise ToolError(f"the search failed: {done.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    answer = json.loads(done.stdout)
    hits, notes = answer["hits"], answer["notes"]
    body = "\n".join(hits) if hits else f"no matches for {pattern}"
    return body + "".join(f"\n[{note}]" for note in notes)


def _scan(root: Path, base: Path, regex: re.Pattern) -> tuple[list[str], list[str]]:
    if base.is_file():
        targets, cut = [(base.relative_to(root).as_posix(), "file")], False
    else:
        targets, cut = confine.walk(root, base)
    hits, notes, total = [], [], 0
    for rel, kind in targets:
        if kind != "file":
            continue  # links are searched where they lead inside, under their real name
        if total >= TOTAL_BYTES:
            notes.append(f"stopped after reading {TOTAL_BYTES // 2**20} MiB in all")
            break
        try:
            data, size = confine.read(root, rel, FILE_BYTES)
        except ToolError:
            continue
        total += len(data)
        if b"\x00" in data[:8192]:
            continue  # binary
        lines = data.decode("utf-8", "replace").split("\n")
        for n, line in enumerate(lines[:-1] if lines[-1] == "" else lines, 1):
            if regex.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:200]}")
                if len(hits) >= MAX_HITS:
                    return hits, notes + [f"stopped at {MAX_HITS} matches"]
        if size > FILE_BYTES:
            notes.append(f"only the first {FILE_BYTES // 2**20} MiB of {rel} were searched")
    if cut:
        notes.append(f"stopped after looking at {confine.WALK_LIMIT} entries")
    return hits, notes


def main() -> None:
    """The child: a JSON request on stdin, {"hits", "notes"} on stdout."""
    request = json.loads(sys.stdin.read())
    root, base = Path(request["root"]), Path(request["base"])
    hits, notes = _scan(root, base, re.compile(request["pattern"]))
    sys.stdout.write(json.dumps({"hits": hits, "notes": notes}))
