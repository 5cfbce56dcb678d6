"""Hostile files for the file tools, for real in tmp_path: hard links, links in loops, bytes that
are not UTF-8, CRLF, huge files, regular expressions that backtrack for ever."""

from __future__ import annotations

import os
import stat
import time
import tracemalloc

import pytest

from qwenlocal.agent import confine
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import ToolError, Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    return Workspace(root, Shell(sandbox=False))


@pytest.mark.parametrize("tool", ["write_file", "edit_file"])
def test_a_hard_link_to_a_file_outside_is_replaced_not_written_through(ws, tmp_path, tool):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    os.link(outside, ws.root / "linked.txt")
    args = {"content": "new\n"} if tool == "write_file" else {"old_text": "keep", "new_text": "new"}
    change = getattr(ws, tool)(path="linked.txt", **args)
    assert "hard link" in change.diff(ws.root)  # said before approval
    result = ws.apply(change)
    assert outside.read_text() == "keep me\n"
    assert (ws.root / "linked.txt").read_text() == ("new\n" if tool == "write_file" else "new me\n")
    assert "hard link" in result and "replaced" in result  # and said to the model afterwards


def test_an_edit_keeps_every_byte_it_does_not_change_crlf_and_mode(ws):
    path = ws.root / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait\r\nline two\r\nx = 1\r\n")
    path.chmod(0o754)
    ws.apply(ws.edit_file(path="latin.txt", old_text="x = 1", new_text="x = 2"))
    assert path.read_bytes() == b"caf\xe9 au lait\r\nline two\r\nx = 2\r\n"
    # read_file shows lines without \r, so the model's old_text has \n: it still matches, CRLF stays
    edit = {"path": "latin.txt", "old_text": "line two\nx = 2", "new_text": "line 2\nx = 3"}
    ws.apply(ws.edit_file(**edit))
    assert path.read_bytes() == b"caf\xe9 au lait\r\nline 2\r\nx = 3\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o754
    ws.apply(ws.write_file(path="latin.txt", content="a\nb\n"))
    assert path.read_bytes() == b"a\r\nb\r\n" and stat.S_IMODE(path.stat().st_mode) == 0o754


def test_old_text_across_an_invalid_byte_is_explained(ws):
    (ws.root / "bad.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ToolError, match="not valid UTF-8"):
        ws.edit_file(path="bad.txt", old_text="caf\ufffd", new_text="cafe")


def test_writes_are_atomic_and_leave_no_temporary_files(ws):
    before = (ws.root / "utils.py").stat().st_ino
    ws.apply(ws.write_file(path="utils.py", content="x = 1\n"))
    assert (ws.root / "utils.py").stat().st_ino != before  # a new file replaced the old one
    assert sorted(p.name for p in ws.root.iterdir()) == ["utils.py"]


def test_symlink_loops_are_clean_observations(ws):
    (ws.root / "a").symlink_to("b")
    (ws.root / "b").symlink_to("a")
    (ws.root / "self").symlink_to(".")
    with pytest.raises(ToolError, match="loop"):
        ws.read_file("a")
    with pytest.raises(ToolError, match="loop"):
        ws.write_file(path="a", content="x")
    assert ws.list_files() == "utils.py"
    assert ws.search_files("add") == "utils.py:1: def add(a, b):"


def test_a_pathological_regex_times_out(ws, monkeypatch):
    monkeypatch.setattr("qwenlocal.agent.search.SECONDS", 2)  # 10 s in use: the same kill, sooner
    (ws.root / "aaa.txt").write_text("a" * 64 + "b\n")
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        ws.search_files("(a+)+$")
    assert time.monotonic() - started < 30


def test_read_file_reads_only_what_it_shows(ws):
    big = ws.root / "big.log"
    with big.open("wb") as f:
        f.write(b"".join(b"line %d\n" % n for n in range(1, 1001)))
        f.seek(300 * 1024 * 1024)  # a sparse hole: 300 MB on paper, nothing on disk
        f.write(b"the end\n")
    tracemalloc.start()
    try:
        out = ws.read_file("big.log", start_line=2, end_line=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "line 2\n" in out and "line 3" in out and "line 4" not in out
    assert "run_shell" in out  # says how to see the rest
    assert peak < 64 * 1024 * 1024


def test_a_huge_binary_file_is_refused_without_reading_it(ws):
    with (ws.root / "disk.img").open("wb") as f:
        f.truncate(1024 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ToolError, match="binary"):
            ws.read_file("disk.img")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_listing_is_bounded(ws, monkeypatch):
    monkeypatch.setattr(confine, "WALK_LIMIT", 50)
    for n in range(80):
        (ws.root / f"f{n:03d}.txt").write_text("x")
    out = ws.list_files()
    assert "f000.txt" in out and "f079.txt" not in out and "stopped after 50" in out


def test_read_file_line_ranges_in_a_file_of_short_lines(ws):
    (ws.root / "many.txt").write_bytes(b"x\r\n" * 100_000 + b"last")
    out = ws.read_file("many.txt", start_line=99_999, end_line=200_000)
    assert out == "many.txt (100001 lines)\n99999  x\n100000  x\n100001  last"
    assert ws.read_file("many.txt", start_line=200_000) == "many.txt (100001 lines)\n"
