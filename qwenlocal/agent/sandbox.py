"""Running the agent's shell commands: in the workspace, with a trimmed environment, a timeout
that kills the whole process group, capped output, and, where bubblewrap works, inside a sandbox
where everything but the workspace is read-only and there is no network."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "SHELL", "TZ")
HEAD = TAIL = 5_000  # bytes of output kept from the start and from the end (under tools.MAX_OUTPUT)


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


def _bwrap_argv(workspace: Path) -> list[str]:
    ws = str(workspace)
    return [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", ws, ws, "--unshare-net", "--unshare-pid", "--new-session", "--die-with-parent",
        "--chdir", ws,
    ]  # fmt: skip


@cache
def bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    try:
        probe = subprocess.run(_bwrap_argv(Path("/")) + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


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
        self.sandboxed = sandbox and bwrap_works()

    @property
    def protection(self) -> str:
        if self.sandboxed:
            return (
                "bubblewrap sandbox: everything outside the workspace is read-only, no network, "
                "own process namespace"
            )
        return (
            "no OS sandbox (bubblewrap unavailable): commands run as you, in the workspace, "
            "with a trimmed environment and a timeout; approval is the protection"
        )

    def env(self, workspace: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(workspace), TERM="dumb", NO_COLOR="1", PAGER="cat", GIT_PAGER="cat")
        return env

    def run(self, command: str, workspace: Path, timeout: int = 60) -> ShellResult:
        argv = ["bash", "-c", command]
        if self.sandboxed:
            argv = _bwrap_argv(workspace) + argv
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=workspace, env=self.env(workspace), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        reader = _Capped(proc.stdout)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        except KeyboardInterrupt:  # Ctrl-C stops the command too, then the agent
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        if timed_out:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            try:  # children left in the background die with the command
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reader.thread.join(timeout=5)
        return ShellResult(
            command,
            None if timed_out else proc.returncode,
            reader.text(),
            time.monotonic() - started,
            timed_out,
        )
