"""Every change the agent makes can be undone, without git.

Each agent run has a folder in the user data dir with its transcript (JSONL) and, for each step
that changes files, a snapshot taken before the change: the files an edit touches, or the whole
workspace (within size limits) before a shell command. `undo_last()` restores the newest step
that has not been undone yet: files and links come back as they were, files the step created go.

Undo reads and writes the workspace through confine.py, as the tools do: it never follows a link
(a shell command may have left one pointing anywhere), and it replaces files instead of writing
into them (a hard link keeps its content). Its own records are written atomically, and a damaged
one is skipped with a warning, so one full disk cannot block every later undo.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..config import data_dir
from ..errors import ExitCode, QwenlocalError
from . import confine
from .confine import ToolError
from .edits import EDIT_BYTES

TREE_FILE_LIMIT = 5 * 1024 * 1024
TREE_TOTAL_LIMIT = 200 * 1024 * 1024
TREE_ENTRY_LIMIT = 200_000  # past this a shell step's new files are not removed by undo


def runs_dir() -> Path:
    return data_dir() / "agent" / "runs"


def _write_json(path: Path, data: dict) -> None:
    """All or nothing: a full disk leaves the old record (or none), never an empty one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Run:
    """One `qwenlocal agent` run: its transcript and its snapshots."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace).resolve()
        self.id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.dir = runs_dir() / self.id
        self.transcript = self.dir / "transcript.jsonl"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.dir / "run.json", {"workspace": str(self.workspace), "id": self.id})
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            raise QwenlocalError(
                f"cannot write the undo record in {self.dir}: {exc.strerror}",
                hint="free some disk space, then run the agent again" if full else "check that folder",
                code=ExitCode.DISK_FULL if full else ExitCode.ERROR,
            ) from None

    def log(self, kind: str, **data) -> None:
        record = {"time": round(time.time(), 3), "type": kind, **data}
        with self.transcript.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def _step_dir(self, step: int) -> Path:
        return self.dir / "steps" / f"{step:04d}"

    def _manifest(self, step: int) -> dict:
        path = self._step_dir(step) / "manifest.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"version": 2, "files": {}, "created_scope": None}  # 2: links are in created_scope

    def _save_manifest(self, step: int, manifest: dict) -> None:
        folder = self._step_dir(step)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "manifest.json", manifest)

    def _keep(self, step: int, manifest: dict, rel: str, limit: int) -> None:
        if rel in manifest["files"]:
            return  # the oldest state in the step is the one to go back to
        info = confine.lstat(self.workspace, rel)
        if info is None:
            entry = {"existed": False}
        elif stat.S_ISLNK(info.st_mode):
            entry = {"existed": True, "link": confine.readlink(self.workspace, rel)}
        elif stat.S_ISREG(info.st_mode):
            data, size = confine.read(self.workspace, rel, limit)
            if size > len(data):
                raise ToolError(f"{rel} is too large to keep a copy of")
            saved = f"files/{len(manifest['files']):06d}"
            (self._step_dir(step) / "files").mkdir(parents=True, exist_ok=True)
            (self._step_dir(step) / saved).write_bytes(data)
            entry = {"existed": True, "saved": saved, "mode": stat.S_IMODE(info.st_mode)}
        else:
            return  # devices, pipes, sockets, folders: undo never touches them
        manifest["files"][rel] = entry

    def before_edit(self, step: int, path: Path) -> None:
        rel = path.relative_to(self.workspace).as_posix()
        try:
            manifest = self._manifest(step)
            self._keep(step, manifest, rel, EDIT_BYTES)
            self._save_manifest(step, manifest)
        except (OSError, ToolError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ToolError(f"could not keep a copy of {rel} for undo ({why}); nothing was changed") from None

    def before_shell(self, step: int) -> str | None:
        """Snapshot the workspace; returns a warning when it was too large to keep whole."""
        manifest = self._manifest(step)
        entries, cut = confine.walk(self.workspace, limit=TREE_ENTRY_LIMIT)
        total, skipped = 0, 0
        for rel, kind in entries:
            try:
                size = os.lstat(self.workspace / rel).st_size if kind == "file" else 0
                if size > TREE_FILE_LIMIT or total + size > TREE_TOTAL_LIMIT:
                    skipped += 1
                    continue
                self._keep(step, manifest, rel, TREE_FILE_LIMIT)
                total += size
            except (OSError, ToolError):
                skipped += 1  # it changed or went away while being copied
        # what is not listed here was created by the step; unknown when the walk was cut short
        manifest["created_scope"] = None if cut else [rel for rel, _ in entries]
        try:
            self._save_manifest(step, manifest)
        except OSError as exc:
            raise ToolError(f"could not save the snapshot for undo ({exc.strerror}); not run") from None
        warnings = []
        if skipped:
            warnings.append(f"{skipped} large files were not snapshotted: changes to them cannot be undone")
        if cut:
            warnings.append(f"more than {TREE_ENTRY_LIMIT:,} entries: new files will not be removed by undo")
        return "; ".join(warnings) or None


def _load(path: Path, warn: Callable[[str], None], check: Callable[[dict], bool]) -> dict | None:
    """A record, or None with a warning when it is damaged (a full disk, a crash, a hand edit)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        why = "" if isinstance(data, dict) and check(data) else "unexpected content"
    except (OSError, ValueError) as exc:
        data, why = None, str(exc) or type(exc).__name__
    if why:
        warn(f"skipped a damaged undo record: {path} ({why})")
        return None
    return data


def _is_run(data: dict) -> bool:
    return isinstance(data.get("workspace"), str)


def _is_manifest(data: dict) -> bool:
    files, scope = data.get("files"), data.get("created_scope")
    entries_ok = isinstance(files, dict) and all(
        isinstance(e, dict) and (not e.get("existed") or "saved" in e or "link" in e) for e in files.values()
    )
    return entries_ok and (scope is None or isinstance(scope, list))


def undo_last(workspace: Path, warn: Callable[[str], None] = lambda _: None) -> list[str]:
    """Restore the newest not-yet-undone step of a run in this workspace; returns what changed.
    What could not be restored, and damaged records that were skipped, go to `warn`."""
    workspace = workspace.resolve()
    runs = sorted(runs_dir().glob("*/run.json"), reverse=True) if runs_dir().is_dir() else []
    for run_file in runs:
        record = _load(run_file, warn, _is_run)
        if record is None or record["workspace"] != str(workspace):
            continue
        for manifest_path in sorted((run_file.parent / "steps").glob("*/manifest.json"), reverse=True):
            manifest = _load(manifest_path, warn, _is_manifest)
            if manifest is None or manifest.get("undone"):
                continue
            if not manifest["files"] and manifest.get("created_scope") is None:
                continue
            changed = _restore(workspace, manifest_path.parent, manifest, warn)
            manifest["undone"] = True
            try:
                _write_json(manifest_path, manifest)
            except OSError as exc:  # restoring again next time is harmless: it is idempotent
                warn(f"could not mark {manifest_path} as undone ({exc.strerror})")
            return changed
    raise QwenlocalError(
        f"nothing to undo in {workspace}",
        hint="only changes made by `qwenlocal agent` can be undone",
        code=ExitCode.BAD_INPUT,
    )


def _restore(workspace: Path, step_dir: Path, manifest: dict, warn: Callable[[str], None]) -> list[str]:
    changed = []
    scope = manifest.get("created_scope")
    if scope is not None:  # first what the step created: a link it made may stand where a folder was
        known = set(scope) | set(manifest["files"])
        removable = ("file", "link") if manifest.get("version", 1) >= 2 else ("file",)
        for rel, kind in confine.walk(workspace, limit=TREE_ENTRY_LIMIT)[0]:
            if rel not in known and kind in removable:
                try:
                    if confine.remove(workspace, rel):
                        changed.append(f"removed {rel}")
                except ToolError as exc:
                    warn(f"not removed {rel}: {exc}")
    for rel, entry in manifest["files"].items():
        try:
            done = _restore_one(workspace, step_dir, rel, entry)
        except (ToolError, OSError) as exc:
            warn(f"not restored {rel}: {exc}")
            continue
        if done:
            changed.append(f"{done} {rel}")
    return changed


def _restore_one(workspace: Path, step_dir: Path, rel: str, entry: dict) -> str | None:
    current = confine.lstat(workspace, rel)
    is_link = current is not None and stat.S_ISLNK(current.st_mode)
    if not entry["existed"]:
        if current is None or stat.S_ISDIR(current.st_mode):
            return None
        return "removed" if confine.remove(workspace, rel) else None
    if "link" in entry:
        if is_link and confine.readlink(workspace, rel) == entry["link"]:
            return None
        confine.write(workspace, rel, link=entry["link"])
        return "restored"
    saved, mode = (step_dir / entry["saved"]).read_bytes(), entry.get("mode")
    if current is not None and stat.S_ISREG(current.st_mode) and current.st_size == len(saved):
        same_mode = mode is None or stat.S_IMODE(current.st_mode) == mode
        if same_mode and confine.read(workspace, rel, len(saved))[0] == saved:
            return None
    confine.write(workspace, rel, saved, mode=mode)
    return "restored"
