"""Running the agent's shell commands: in the workspace, with a trimmed environment, through a
supervisor that kills everything the command leaves behind, with a timeout and capped output, and,
where bubblewrap works, inside a sandbox: no capabilities, its own user, pid and network
namespaces, everything but the workspace read-only, well-known credential files hidden."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "SHELL", "TZ")
HEAD = TAIL = 5_000  # bytes of output kept from the start and from the end (under tools.MAX_OUTPUT)
SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
# Credentials a command could otherwise read (the disk outside the workspace stays readable):
# inside the sandbox a folder becomes an empty tmpfs and a file is /dev/null.
CREDENTIALS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".config/gh",
    ".cache/huggingface/token", ".cache/huggingface/stored_tokens", ".netrc", ".git-credentials",
    ".config/git/credentials", ".npmrc", ".pypirc", ".pgpass", ".password-store",
    ".local/share/keyrings", ".vault-token",
)  # fmt: skip
# Tried in order: bwrap < 0.8 lacks --disable-userns; without user namespaces (or as setuid) the
# capabilities are still dropped. As root, bwrap keeps every capability unless told otherwise.
HARDENINGS = (
    ("--unshare-user", "--disable-userns", "--cap-drop", "ALL"),
    ("--unshare-user", "--cap-drop", "ALL"),
    ("--cap-drop", "ALL"),
)


@dataclass(frozen=True)
class ShellResult:
    command: str
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool = False

    def describe(self) -> str:
        if self.timed_out:
            status = f"timed out after {self.seconds:.0f}s (the command and its children were killed)"
        else:
            status = f"exit code {self.exit_code}"
        return f"$ {self.command}\n{self.output.rstrip()}\n[{status}]".replace("\n\n[", "\n[")


def credential_paths(workspace: Path) -> list[Path]:
    """The credential files and folders that exist, resolved; never one that holds the workspace."""
    homes = {os.path.expanduser("~")}
    try:  # HOME may have been changed (sudo, tests): the account's own home too
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # a uid without an account (containers)
        pass
    found = [Path(home, name) for home in homes for name in CREDENTIALS]
    for hf_home in filter(None, (os.environ.get("HF_HOME"),)):
        found += [Path(hf_home, "token"), Path(hf_home, "stored_tokens")]
    found += [Path(p) for p in filter(None, (os.environ.get("HF_TOKEN_PATH"),))]
    paths = {Path(os.path.realpath(p)) for p in found if os.path.lexists(p)}
    ws = workspace.resolve()
    return sorted(p for p in paths if p.exists() and not ws.is_relative_to(p))


def _hide(paths: list[Path]) -> list[str]:
    args: list[str] = []
    for path in paths:
        # a device under --ro-bind cannot be opened (nodev): --dev-bind makes the file read empty
        args += ["--tmpfs", str(path)] if path.is_dir() else ["--dev-bind", "/dev/null", str(path)]
    return args


def _bwrap_argv(workspace: Path, hardening: tuple[str, ...]) -> list[str]:
    ws = str(workspace)
    # A read-only mount does not stop connect() on a unix socket: /run holds the host's (docker,
    # D-Bus, systemd, the user's session bus), so it becomes empty; abstract ones go with --unshare-net
    run = ["--tmpfs", "/run"] if os.path.isdir("/run") and not workspace.is_relative_to("/run") else []
    return [
        shutil.which("bwrap") or "bwrap", *hardening,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--new-session", "--die-with-parent",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *run,
        "--bind", ws, ws, *_hide(credential_paths(workspace)), "--chdir", ws,
    ]  # fmt: skip


@cache
def _probe() -> tuple[tuple[str, ...] | None, str]:
    """The strongest hardening with which bubblewrap starts here, with the argv `run` uses, and
    when none does, why not."""
    if not sys.platform.startswith("linux") or shutil.which("bwrap") is None:
        return None, "bubblewrap unavailable"
    why = "bubblewrap does not start here"
    with tempfile.TemporaryDirectory() as probe_ws:
        for hardening in HARDENINGS:
            argv = _bwrap_argv(Path(probe_ws), hardening) + ["true"]
            try:
                probe = subprocess.run(argv, capture_output=True, timeout=10, env=_trimmed_env(probe_ws))
            except (OSError, subprocess.SubprocessError) as err:
                return None, f"{why}: {err}"
            if probe.returncode == 0:
                return hardening, ""
            if not why.endswith(")"):  # the strongest attempt's error says most
                why += f" ({probe.stderr.decode(errors='replace').strip()[:200]})"
    return None, why


def bwrap_hardening() -> tuple[str, ...] | None:
    return _probe()[0]


def bwrap_works() -> bool:
    return bwrap_hardening() is not None


def _trimmed_env(home: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=home, TERM="dumb", NO_COLOR="1", PAGER="cat", GIT_PAGER="cat")
    return env


def _hide_own_environment() -> None:
    """Without a sandbox a command runs as the agent's user and could read the agent's
    /proc/PID/environ (HF_TOKEN, keys) or its memory. A non-dumpable process's /proc files belong
    to root, so only root can still read them. Children are dumpable again after exec."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


class _Capped:
    """Reads a stream to its end, keeping its head and tail only (a command may print gigabytes)."""

    def __init__(self, stream) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
            room = HEAD - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail.append(chunk)
                self.tail_size += len(chunk)
                while self.tail_size - len(self.tail[0]) >= TAIL:
                    self.dropped += len(self.tail[0])
                    self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)
        if len(tail) > TAIL:
            self.dropped += len(tail) - TAIL
            tail = tail[-TAIL:]
        cut = f"\n[... {self.dropped} bytes of output cut ...]\n" if self.dropped else ""
        return bytes(self.head).decode("utf-8", "replace") + cut + tail.decode("utf-8", "replace")


class Shell:
    def __init__(self, sandbox: bool = True) -> None:
        self.wanted = sandbox
        self.hardening = bwrap_hardening() if sandbox else None
        self.sandboxed = self.hardening is not None
        if not self.sandboxed:
            _hide_own_environment()

    @property
    def protection(self) -> str:
        if self.sandboxed:
            users = "own user namespace, " if "--unshare-user" in self.hardening else ""
            return (
                f"bubblewrap sandbox: {users}no capabilities, everything outside the workspace "
                "read-only, credential files hidden, no network, own process namespace"
            )
        exposed = "a command can read your other processes' environments, not the agent's"
        if os.geteuid() == 0:
            exposed = "running as root, a command can read any process's memory and environment, "
            exposed += "the agent's included"
        why = _probe()[1] if self.wanted else "sandbox turned off"
        return (
            f"no OS sandbox ({why}): commands run as you, in the workspace, with a trimmed "
            f"environment and a timeout; {exposed}; approval is the protection"
        )

    def env(self, workspace: Path) -> dict[str, str]:
        return _trimmed_env(str(workspace))

    def run(self, command: str, workspace: Path, timeout: int = 60) -> ShellResult:
        argv = ["bash", "-c", command]
        if self.sandboxed:
            argv = _bwrap_argv(workspace, self.hardening) + argv
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", SUPERVISOR, str(os.getpid()), *argv],
            cwd=workspace, env=self.env(workspace), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        reader = _Capped(proc.stdout)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
        except KeyboardInterrupt:  # Ctrl-C stops the command too, then the agent
            _stop(proc)
            raise
        try:  # if the command killed the supervisor, what stayed in its group dies here
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reader.thread.join(timeout=5)  # a process that escaped may hold the pipe: don't wait on it
        return ShellResult(
            command,
            None if timed_out else proc.returncode,
            reader.text(),
            time.monotonic() - started,
            timed_out,
        )


def _stop(proc: subprocess.Popen) -> None:
    """Asks the supervisor to kill the command and all it started; kills its group if it can't."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
