"""The shell's confinement for real: secrets in the agent's environment, capabilities and mounts
inside bubblewrap, hidden credential files, and background processes that try to outlive the
command. Each runs as the suite's user and, when the suite runs as root, as an ordinary user too."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from qwenlocal.agent.sandbox import Shell, bwrap_works

SECRET = "hf_secret_b8f3e1"
REPO = Path(__file__).resolve().parents[1]
AGENT = """
import json, sys
from pathlib import Path
from qwenlocal.agent.sandbox import Shell
shell = Shell(sandbox=sys.argv[1] == "sandbox")
output = ""
if shell.sandboxed or sys.argv[1] != "sandbox":  # never try escapes unconfined on the host
    output = shell.run(sys.argv[3], Path(sys.argv[2]), timeout=30).output
print(json.dumps({"output": output, "protection": shell.protection}))
"""
needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable on this machine")


@functools.cache
def python_for(user: str) -> str | None:
    """An interpreter `user` may run: this one, or the system's (this one may sit in /root)."""
    for python in (sys.executable, "/usr/bin/python3"):
        check = ["runuser", "-u", user, "--", python, "-c", "import sys; assert sys.version_info >= (3, 11)"]
        if subprocess.run(check, capture_output=True, cwd="/").returncode == 0:
            return python
    return None


def _no_ordinary_user() -> str | None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "dropping to an ordinary user needs root and runuser"
    return None if python_for("nobody") else "no Python that the user nobody may run"


NO_USER = _no_ordinary_user()
USERS = ["suite-user", pytest.param("nobody", marks=pytest.mark.skipif(bool(NO_USER), reason=str(NO_USER)))]


@pytest.fixture
def workspace():
    """Outside /tmp (the sandbox mounts a fresh /tmp) and usable by the ordinary user."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="qwenlocal-ws-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def agent_shell(command: str, workspace: Path, sandbox: bool, user: str) -> dict:
    """Runs `command` through Shell in a fresh agent process whose own environment holds SECRET,
    as an attacker sees it: the agent is the command's grandparent, its environment is real."""
    env = {**os.environ, "HF_TOKEN": SECRET, "OPENAI_API_KEY": SECRET, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", AGENT, "sandbox" if sandbox else "none", str(workspace), command]
    if user != "suite-user":
        shutil.chown(workspace, user)
        env["HOME"] = str(workspace)
        argv = ["runuser", "-u", user, "--", python_for(user), *argv[1:]]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=workspace)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("user", USERS)
def test_without_sandbox_the_parent_holds_no_secret(workspace, user):
    result = agent_shell(
        "echo parent:; cat /proc/$PPID/environ; echo; echo all:; cat /proc/*/environ 2>/dev/null",
        workspace,
        sandbox=False,
        user=user,
    )
    parent, everyone = result["output"].split("all:")
    assert "parent:" in parent and "PATH=" in parent  # it did read its parent's environment
    assert SECRET not in parent
    if os.geteuid() == 0 and user == "suite-user":  # root reads every process: said plainly
        assert "running as root, a command can read any process" in result["protection"]
    else:  # the agent itself is not dumpable: its environment is root's to read only
        assert SECRET not in everyone


@needs_bwrap
@pytest.mark.parametrize("user", USERS)
def test_the_sandbox_drops_capabilities_and_hides_the_host(workspace, user):
    escape = Path("/etc", f"qwenlocal-escape-{workspace.name}")
    result = agent_shell(
        "grep CapEff /proc/self/status; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
        f"mount -o remount,rw,bind / && touch {escape} && echo remounted-$((6 * 7)); "
        "umount -l /proc && echo unmounted-$((6 * 7)); "
        "unshare -Urm sh -c 'umount -l /proc; cat /proc/*/environ'; cat /proc/*/environ",
        workspace,
        sandbox=True,
        user=user,
    )
    out, escaped = result["output"], escape.exists()
    escape.unlink(missing_ok=True)
    if "bubblewrap" not in result["protection"]:
        pytest.skip(f"bubblewrap does not start for {user}: {result['protection']}")
    assert "CapEff:\t0000000000000000" in out
    assert "remounted-42" not in out and not escaped
    assert "unmounted-42" not in out
    assert "bwrap" in out.splitlines()[1]  # pid 1 is the sandbox's own, not the agent
    assert SECRET not in out


@needs_bwrap
def test_credential_files_read_as_empty_in_the_sandbox(workspace, monkeypatch):
    home = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="qwenlocal-home-"))
    try:
        files = {
            ".ssh/id_ed25519": "PRIVATE-KEY",
            ".netrc": "password NETRC-PW",
            ".aws/credentials": "AWS-KEY",
            ".cache/huggingface/token": "HF-CACHE-TOKEN",
            "hf/token": "HF-HOME-TOKEN",
        }
        for name, text in files.items():
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            (home / name).write_text(text)
        project = home / ".docker" / "project"  # a workspace inside a hidden folder stays visible
        project.mkdir(parents=True)
        (project / "mine.txt").write_text("MY-FILE")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("HF_HOME", str(home / "hf"))
        paths = " ".join(str(home / name) for name in files)
        out = Shell().run(f"cat {paths}; ls -A {home}/.ssh; cat mine.txt; echo w > new.txt", project)
        for text in files.values():
            assert text not in out.output
        assert "MY-FILE" in out.output and (project / "new.txt").read_text() == "w\n"
        assert Shell().run(f"cat {home}/.netrc", workspace).output == ""
    finally:
        shutil.rmtree(home)


@needs_bwrap
@pytest.mark.skipif(not os.access("/run", os.W_OK), reason="cannot create a socket in /run")
def test_the_hosts_sockets_are_out_of_reach(workspace):
    import socket

    path = f"/run/qwenlocal-test-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    try:
        probe = f"import socket; socket.socket(socket.AF_UNIX).connect({path!r}); print('connected-' + '42')"
        out = Shell().run(f"python3 -c {shlex.quote(probe)}", workspace).output
        assert "connected-42" not in out and "No such file" in out
    finally:
        server.close()
        os.unlink(path)


def running(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(proc.info["cmdline"] or ()) and proc.info["status"] != "zombie":
            found.append(proc)
    return found


def survivors(marker: str) -> list[psutil.Process]:
    """The processes holding `marker` still alive after a grace period for the dying ones."""
    deadline = time.monotonic() + 5
    while (found := running(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        proc.kill()


BACKGROUND = (
    "setsid sleep 1000.{n}1 & nohup sleep 1000.{n}2 & (sleep 1000.{n}3 &); "
    "setsid sh -c 'sleep 1000.{n}4 & sleep 1000.{n}5' & echo started"
)


@pytest.mark.parametrize("sandbox", [False, pytest.param(True, marks=needs_bwrap)])
def test_background_processes_die_with_the_command(sandbox, workspace):
    n = 7 if sandbox else 3
    started = time.monotonic()
    result = Shell(sandbox=sandbox).run(BACKGROUND.format(n=n), workspace)
    left = survivors(f"sleep 1000.{n}")
    kill(left)
    assert not left, [p.info["cmdline"] for p in left]
    assert "started" in result.output and result.exit_code == 0
    assert time.monotonic() - started < 30  # a pipe held open by a child does not hold the call


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize("sandbox", [False, pytest.param(True, marks=needs_bwrap)])
def test_the_timeout_holds_when_a_background_child_keeps_the_pipe(sandbox, workspace):
    n = 8 if sandbox else 4
    started = time.monotonic()
    result = Shell(sandbox=sandbox).run(BACKGROUND.format(n=n) + "; sleep 60", workspace, timeout=1)
    left = survivors(f"sleep 1000.{n}")
    kill(left)
    assert result.timed_out and not left
    assert time.monotonic() - started < 30


def test_a_command_that_kills_its_supervisor_still_ends_with_the_call(workspace):
    result = Shell(sandbox=False).run("kill -9 $PPID; sleep 1000.61", workspace)
    left = survivors("sleep 1000.61")
    kill(left)
    assert not left and result.exit_code == -9  # the supervisor was killed, not the command


def test_commands_die_with_the_agent(workspace):
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, "none", str(workspace), BACKGROUND.format(n=5) + "; sleep 1000.56"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(running("sleep 1000.5")) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    left = survivors("sleep 1000.5")
    kill(left)
    assert not left


@pytest.fixture
def fake_bwrap(tmp_path, monkeypatch):
    """Puts a stand-in `bwrap` first on PATH, running the given shell code; the probe reruns."""
    from qwenlocal.agent import sandbox

    def install(script: str) -> None:
        (tmp_path / "bwrap").write_text(f"#!/bin/sh\n{script}\n")
        (tmp_path / "bwrap").chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
        sandbox._probe.cache_clear()

    yield install
    sandbox._probe.cache_clear()


def test_an_older_bubblewrap_still_drops_capabilities(fake_bwrap):
    fake_bwrap('case "$*" in *--disable-userns*) echo "bwrap: Unknown option" >&2; exit 1;; esac')
    shell = Shell()
    assert shell.hardening == ("--unshare-user", "--cap-drop", "ALL")
    assert "own user namespace, no capabilities" in shell.protection


def test_when_bubblewrap_fails_the_protection_says_why(fake_bwrap):
    fake_bwrap('echo "bwrap: No permissions to creating new namespace" >&2; exit 1')
    shell = Shell()
    assert not shell.sandboxed
    assert "bubblewrap does not start here (bwrap: No permissions" in shell.protection
