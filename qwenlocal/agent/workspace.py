"""The workspace the agent's tools act on: one method per tool of the table in tools.py.

Every path is resolved inside the workspace (confine.py): `..`, absolute paths elsewhere, symlinks
that lead out or loop and device files are refused with an observation the model can read. Each
tool is bounded: bytes read, entries listed, seconds searched, characters returned. The methods of
"edit" tools only plan: they return a Change (edits.py), which the loop shows, has approved,
snapshots for undo and then applies.
"""

from __future__ import annotations

import io
from fnmatch import fnmatch
from itertools import islice
from pathlib import Path

from . import confine, edits
from .confine import ToolError
from .edits import Change
from .sandbox import Shell
from .search import search

MAX_READ_LINES = 400
MAX_OUTPUT = 12_000  # characters of any observation
MAX_LIST = 300
READ_BYTES = 8 * 1024 * 1024  # read_file looks at most this far into a file


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


class ImageRead(str):
    """read_file's result for an image: its description, and the image (shown to the model)."""

    image = None


class Workspace:
    def __init__(self, root: Path, shell: Shell) -> None:
        self.root = Path(root).resolve()
        self.shell = shell
        self.images = False  # True when the model has a vision projector: read_file shows images

    def resolve(self, given: str) -> Path:
        """A path inside the workspace, or ToolError saying why not."""
        return confine.resolve(self.root, given)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def text(self, path: Path, limit: int) -> tuple[bytes, int]:
        """The start of a text file (at most `limit` bytes) and its size; binary files refused."""
        if path.is_dir():
            raise ToolError(f"{self.rel(path)} is a directory")
        if not path.exists():
            raise ToolError(f"no such file: {self.rel(path)}")
        data, size = confine.read(self.root, self.rel(path), limit)
        if b"\x00" in data[:8192]:
            raise ToolError(f"{self.rel(path)} is a binary file")
        return data, size

    def _image(self, path: Path) -> ImageRead | None:
        """An image file as an image for the model (None: not an image, read as text)."""
        from .. import images
        from ..errors import QwenlocalError

        if not path.is_file():
            return None
        head, _ = confine.read(self.root, self.rel(path), 64)
        if not images.is_image(head):
            return None
        data, _ = confine.read(self.root, self.rel(path), images.MAX_BYTES + 1)
        try:
            image = images.load(data, self.rel(path))
        except QwenlocalError as error:
            raise ToolError(error.message) from None
        result = ImageRead(f"{self.rel(path)}: a {image.format} image, {image.width}x{image.height} pixels")
        result.image = image
        return result

    # -- edit tools: plan a change; the loop applies it once approved -------------------------

    def write_file(self, path: str = "", content: str | None = None) -> Change:
        return edits.plan_write(self, path, content)

    def edit_file(self, path: str = "", old_text: str | None = None, new_text: str | None = None) -> Change:
        return edits.plan_edit(self, path, old_text, new_text)

    def apply(self, change: Change) -> str:
        confine.write(self.root, self.rel(change.path), change.after)
        verb = "created" if change.before is None else "updated"
        note = f"[{change.note}]\n" if change.note else ""
        diff = cap(change.diff(self.root).removeprefix(note))
        return f"{verb} {self.rel(change.path)} ({len(change.after)} bytes)\n{note}{diff}"

    # -- read tools -----------------------------------------------------------------------------

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        if self.images:
            seen = self._image(self.resolve(path))
            if seen is not None:
                return seen
        data, size = self.text(self.resolve(path), READ_BYTES)
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

    # -- the shell tool: the loop snapshots the workspace first ---------------------------------

    def run_shell(self, command: str, timeout: int | None = None) -> str:
        if not isinstance(command, str) or not command.strip():
            raise ToolError("run_shell needs a command")
        result = self.shell.run(command, self.root, timeout=min(int(timeout or 60), 600))
        return cap(result.describe())
