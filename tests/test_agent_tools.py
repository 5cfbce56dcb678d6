"""The tools for real, in a temporary workspace: confinement, edits, shell limits, sandbox."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from qwenlocal.agent.sandbox import Shell, bwrap_works
from qwenlocal.agent.tools import ToolError, Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "utils.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("X = 1\n# TODO: more\n")
    (tmp_path / "secret.txt").write_text("top secret")
    return Workspace(root, Shell(sandbox=True))


@pytest.mark.parametrize("path", ["../secret.txt", "pkg/../../secret.txt", "/etc/passwd", "~/.bashrc"])
def test_paths_outside_the_workspace_are_refused(ws, path):
    with pytest.raises(ToolError) as err:
        ws.read_file(path)
    assert "refused" in str(err.value) or "no such file" in str(err.value)
    assert "top secret" not in str(err.value)


def test_symlinks_that_lead_out_are_refused(ws, tmp_path):
    (ws.root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (ws.root / "linkdir").symlink_to(tmp_path)
    for path in ("link.txt", "linkdir/secret.txt"):
        with pytest.raises(ToolError, match="symlink"):
            ws.read_file(path)
    with pytest.raises(ToolError, match="symlink"):
        ws.write_file(path="linkdir/new.txt", content="x")
    assert not (tmp_path / "new.txt").exists()
    assert "link" not in ws.list_files()  # listing does not follow links out
    assert ws.search_files("secret") == "no matches for secret"  # nor does searching


def test_device_files_are_refused(ws):
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(ToolError, match="device, socket or pipe"):
        ws.read_file("pipe")


def test_read_with_line_ranges(ws):
    out = ws.read_file("pkg/mod.py", start_line=2, end_line=2)
    assert "# TODO: more" in out and "X = 1" not in out


def test_edit_replaces_exactly_one_match_and_shows_a_diff(ws):
    change = ws.edit_file(path="utils.py", old_text="a + b", new_text="a - b")
    diff = change.diff(ws.root)
    assert "-    return a + b" in diff and "+    return a - b" in diff
    assert "a + b" in (ws.root / "utils.py").read_text()  # planning changes nothing
    ws.apply(change)
    assert (ws.root / "utils.py").read_text() == "def add(a, b):\n    return a - b\n"
    with pytest.raises(ToolError, match="does not occur"):
        ws.edit_file(path="utils.py", old_text="a * b", new_text="x")
    (ws.root / "twice.py").write_text("x\nx\n")
    with pytest.raises(ToolError, match="occurs 2 times"):
        ws.edit_file(path="twice.py", old_text="x", new_text="y")


def test_write_creates_folders_inside(ws):
    ws.apply(ws.write_file(path="new/dir/file.txt", content="hi\n"))
    assert (ws.root / "new/dir/file.txt").read_text() == "hi\n"


def test_list_and_search(ws):
    assert ws.list_files("*.py").splitlines() == ["pkg/mod.py", "utils.py"]
    assert ws.search_files("TODO") == "pkg/mod.py:2: # TODO: more"
    assert "no matches" in ws.search_files("nothing-here")


def test_shell_reports_exit_code_and_output(ws):
    out = ws.run_shell("echo hello; ls; exit 3")
    assert "hello" in out and "utils.py" in out and "[exit code 3]" in out


def test_shell_timeout_kills_the_whole_process_group(ws):
    started = time.monotonic()
    out = ws.run_shell("sleep 60 & sleep 60; echo reached-$((40 + 2))", timeout=1)
    assert time.monotonic() - started < 10
    assert "timed out" in out and "reached-42" not in out


def test_shell_output_is_capped(ws):
    out = ws.run_shell("yes 0123456789 | head -c 5000000")
    assert len(out) < 20_000 and "bytes of output cut" in out


def test_shell_environment_is_trimmed(ws, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    out = ws.run_shell("env")
    assert "hf_secret_value" not in out and f"HOME={ws.root}" in out


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable on this machine")
def test_the_sandbox_keeps_the_rest_read_only_and_offline(ws):
    import socket
    import tempfile

    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        assert "bubblewrap" in ws.shell.protection
        out = ws.run_shell(
            f"echo x > {outside}/escape.txt; echo inside > ok.txt; "
            f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' "
            "&& echo connected-$((6 * 7))"
        )
        assert not (outside / "escape.txt").exists() and "Read-only file system" in out
        assert (ws.root / "ok.txt").read_text() == "inside\n"
        assert "connected-42" not in out  # the host's loopback is not reachable
    finally:
        server.close()
        outside.rmdir()
