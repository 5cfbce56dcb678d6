"""Undo under hostile conditions, for real in tmp_path: links that a shell command left behind,
hard links, link loops, and undo records that a full disk damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qwenlocal.agent.undo import Run, runs_dir, undo_last
from qwenlocal.commands.agent import undo_step
from qwenlocal.errors import QwenlocalError
from qwenlocal.terminal import Terminal


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "project"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside v1\n")
    return root.resolve()


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "f.txt").write_text("outside, untouched\n")
    (folder / "new.txt").write_text("outside, untouched\n")
    return folder


def test_undo_of_a_shell_step_never_writes_through_a_link_it_made(ws, outside):
    run = Run(ws)
    run.before_shell(1)
    # the command: `rm -r d && ln -s <outside> d`
    (ws / "d" / "f.txt").unlink()
    (ws / "d").rmdir()
    (ws / "d").symlink_to(outside)
    undo_last(ws)
    assert (outside / "f.txt").read_text() == "outside, untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt", "new.txt"]
    assert not (ws / "d").is_symlink() and (ws / "d" / "f.txt").read_text() == "inside v1\n"


def test_undo_never_deletes_outside_through_a_folder_that_became_a_link(ws, outside, capsys):
    run = Run(ws)
    run.before_edit(1, ws / "d" / "new.txt")  # write_file d/new.txt: a new file
    (ws / "d" / "new.txt").write_text("made by the agent\n")
    # later, outside the agent, d is replaced by a link to a folder that has a new.txt
    for item in (ws / "d").iterdir():
        item.unlink()
    (ws / "d").rmdir()
    (ws / "d").symlink_to(outside)
    undo_step(Terminal(), ws)
    assert (outside / "new.txt").read_text() == "outside, untouched\n"
    assert capsys.readouterr().err == (
        "qwenlocal: warning: not restored d/new.txt: d is a symlink or a file, not a folder "
        "(links are never followed)\n"
    )


def test_undo_replaces_hard_links_instead_of_writing_into_them(ws, outside):
    run = Run(ws)
    run.before_shell(1)
    # the command: `rm d/f.txt && ln <outside>/f.txt d/f.txt && ln <outside>/new.txt made.txt`
    (ws / "d" / "f.txt").unlink()
    os.link(outside / "f.txt", ws / "d" / "f.txt")
    os.link(outside / "new.txt", ws / "made.txt")
    assert set(undo_last(ws)) == {"restored d/f.txt", "removed made.txt"}
    assert (outside / "f.txt").read_text() == "outside, untouched\n"
    assert (outside / "new.txt").read_text() == "outside, untouched\n"
    assert (ws / "d" / "f.txt").read_text() == "inside v1\n" and not (ws / "made.txt").exists()


def test_snapshots_do_not_follow_links_out_or_loop(ws, outside):
    (ws / "out").symlink_to(outside)
    (ws / "loop").symlink_to("loop")
    (ws / "self").symlink_to(".")
    (ws / "d" / "mode.sh").write_text("echo hi\n")
    (ws / "d" / "mode.sh").chmod(0o750)
    run = Run(ws)
    assert run.before_shell(1) is None
    manifest = json.loads((run.dir / "steps" / "0001" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"d/f.txt", "d/mode.sh", "out", "loop", "self"}
    # the command removes the links and changes a file's mode; undo puts both back
    for name in ("out", "loop", "self"):
        (ws / name).unlink()
    (ws / "d" / "mode.sh").chmod(0o600)
    assert set(undo_last(ws)) == {"restored out", "restored loop", "restored self", "restored d/mode.sh"}
    assert os.readlink(ws / "out") == str(outside) and os.readlink(ws / "loop") == "loop"
    assert (ws / "d" / "mode.sh").stat().st_mode & 0o777 == 0o750


def test_a_damaged_undo_record_is_skipped_with_a_warning(ws, tmp_path):
    run = Run(ws)
    run.before_edit(1, ws / "d" / "f.txt")
    (ws / "d" / "f.txt").write_text("edited\n")
    newer = runs_dir() / "99999999-999999-aaaaaa"  # a run that a full disk cut short
    newer.mkdir()
    (newer / "run.json").write_text("")
    damaged = run.dir / "steps" / "0002"
    damaged.mkdir()
    (damaged / "manifest.json").write_text('{"files": ')
    warnings: list[str] = []
    assert undo_last(ws, warn=warnings.append) == ["restored d/f.txt"]
    assert (ws / "d" / "f.txt").read_text() == "inside v1\n"
    assert len(warnings) == 2 and all("damaged" in w for w in warnings)
    assert str(newer / "run.json") in warnings[0] and str(damaged / "manifest.json") in warnings[1]


def test_the_cli_prints_undo_warnings(ws, capsys):
    Run(ws).before_edit(1, ws / "d" / "f.txt")
    (ws / "d" / "f.txt").write_text("edited\n")
    (runs_dir() / "99999999-999999-aaaaaa").mkdir()
    (runs_dir() / "99999999-999999-aaaaaa" / "run.json").write_text("{")
    undo_step(Terminal(), ws)
    err = capsys.readouterr().err
    assert "restored d/f.txt" in err and "damaged undo record" in err


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from qwenlocal.agent.undo import Run
from qwenlocal.errors import QwenlocalError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, writes fail as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
try:
    Run(Path(sys.argv[1]))
except QwenlocalError as error:
    print(error.message)
"""


def test_a_full_disk_at_the_start_of_a_run_leaves_no_broken_record(ws):
    Run(ws).before_edit(1, ws / "d" / "f.txt")
    (ws / "d" / "f.txt").write_text("edited\n")
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(ws)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "undo record" in out.stdout, out.stderr
    assert all(p.stat().st_size > 0 for p in runs_dir().glob("*/run.json"))
    assert not [p for p in runs_dir().rglob("*") if ".tmp" in p.name]
    assert undo_last(ws) == ["restored d/f.txt"]
    with pytest.raises(QwenlocalError, match="nothing to undo"):
        undo_last(ws)


def test_a_record_written_before_links_were_tracked_leaves_links_alone(ws, outside):
    step = Run(ws).dir / "steps" / "0001"
    step.mkdir(parents=True)
    (step / "manifest.json").write_text(json.dumps({"files": {}, "created_scope": ["d/f.txt"]}))
    (ws / "out").symlink_to(outside)  # its scope did not list links: this one may be older
    (ws / "new.txt").write_text("made by the step\n")
    assert undo_last(ws) == ["removed new.txt"]
    assert (ws / "out").is_symlink()
