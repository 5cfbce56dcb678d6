"""Every change the agent makes can be undone, without git.

Each agent run has a folder in the user data dir with its transcript (JSONL) and, for each step
that changes files, a snapshot taken before the change: the files an edit touches, or the whole
workspace (within size limits) before a shell command. `undo_last()` restores the newest step
that has not been undone yet: files come back as they were, files the step created go away.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

from ..config import data_dir
from ..errors import Exit, QwenlocalError
from .tools import SKIP_DIRS

TREE_FILE_LIMIT = 5 * 1024 * 1024
TREE_TOTAL_LIMIT = 200 * 1024 * 1024


def runs_dir() -> Path:
    return data_dir() / "agent" / "runs"


def _files(root: Path):
    for item in root.rglob("*"):
        rel = item.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts) or item.is_symlink() or not item.is_file():
            continue
        yield rel


class Run:
    """One `qwenlocal agent` run: its transcript and its snapshots."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.dir = runs_dir() / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.transcript = self.dir / "transcript.jsonl"
        (self.dir / "run.json").write_text(json.dumps({"workspace": str(workspace), "id": self.id}))

    def log(self, kind: str, **data) -> None:
        record = {"time": round(time.time(), 3), "type": kind, **data}
        with self.transcript.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def _step_dir(self, step: int) -> Path:
        return self.dir / "steps" / f"{step:04d}"

    def _manifest(self, step: int) -> dict:
        path = self._step_dir(step) / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {"files": {}, "created_scope": None}

    def _save_manifest(self, step: int, manifest: dict) -> None:
        folder = self._step_dir(step)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))

    def _keep(self, step: int, manifest: dict, rel: str) -> None:
        if rel in manifest["files"]:
            return  # the oldest state in the step is the one to go back to
        source = self.workspace / rel
        entry = {"existed": source.is_file()}
        if entry["existed"]:
            saved = self._step_dir(step) / "files" / rel
            saved.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, saved)
            entry["saved"] = str(saved.relative_to(self._step_dir(step)))
        manifest["files"][rel] = entry

    def before_edit(self, step: int, path: Path) -> None:
        manifest = self._manifest(step)
        self._keep(step, manifest, path.relative_to(self.workspace).as_posix())
        self._save_manifest(step, manifest)

    def before_shell(self, step: int) -> str | None:
        """Snapshot the workspace; returns a warning when it was too large to keep whole."""
        manifest = self._manifest(step)
        total, skipped = 0, 0
        present = []
        for rel in _files(self.workspace):
            size = (self.workspace / rel).stat().st_size
            present.append(rel.as_posix())
            if size > TREE_FILE_LIMIT or total + size > TREE_TOTAL_LIMIT:
                skipped += 1
                continue
            total += size
            self._keep(step, manifest, rel.as_posix())
        manifest["created_scope"] = present  # files not listed here were created by the step
        self._save_manifest(step, manifest)
        if skipped:
            return f"{skipped} large files were not snapshotted: changes to them cannot be undone"
        return None


def undo_last(workspace: Path) -> list[str]:
    """Restore the newest not-yet-undone step of a run in this workspace; returns what changed."""
    workspace = workspace.resolve()
    runs = sorted(runs_dir().glob("*/run.json"), reverse=True) if runs_dir().is_dir() else []
    for run_file in runs:
        if json.loads(run_file.read_text()).get("workspace") != str(workspace):
            continue
        steps = sorted((run_file.parent / "steps").glob("*/manifest.json"), reverse=True)
        for manifest_path in steps:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("undone") or not manifest["files"] and manifest.get("created_scope") is None:
                continue
            changed = _restore(workspace, manifest_path.parent, manifest)
            manifest["undone"] = True
            manifest_path.write_text(json.dumps(manifest, indent=1))
            return changed
    raise QwenlocalError(
        f"nothing to undo in {workspace}",
        hint="only changes made by `qwenlocal agent` can be undone",
        code=Exit.BAD_INPUT,
    )


def _restore(workspace: Path, step_dir: Path, manifest: dict) -> list[str]:
    changed = []
    for rel, entry in manifest["files"].items():
        target = workspace / rel
        if entry["existed"]:
            saved = step_dir / entry["saved"]
            if not target.is_file() or target.read_bytes() != saved.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(saved, target)
                changed.append(f"restored {rel}")
        elif target.is_file():
            target.unlink()
            changed.append(f"removed {rel}")
    scope = manifest.get("created_scope")
    if scope is not None:
        known = set(scope) | set(manifest["files"])
        for rel in list(_files(workspace)):
            if rel.as_posix() not in known:
                (workspace / rel).unlink()
                changed.append(f"removed {rel.as_posix()}")
    return changed
