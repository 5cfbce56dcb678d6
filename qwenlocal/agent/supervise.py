"""Runs one shell command for the agent and, when it ends, kills every process it left behind.

`python -I supervise.py AGENT_PID ARGV...`, started by `sandbox.Shell` in a session of its own and
with the command's trimmed environment, so that the parent a command sees (`/proc/$PPID/environ`)
holds no secrets. On Linux it is a child subreaper: a background job that calls `setsid` or forks
twice is reparented here rather than to init, so it is still found and killed when the command
exits, when the agent asks (SIGTERM: timeout, Ctrl-C) or when the agent dies.

What escapes: processes that are not descendants (a job handed to systemd-run, cron, at, ssh, or a
tmux/screen server that was already running), and a job started with `setsid` after the command
killed this supervisor (`kill -9 $PPID`): it goes to init (the agent still kills the group). Under
bubblewrap neither matters much, as the sandbox's pid namespace dies with the command.
Standard library only: it runs with `-I` and must start fast.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class Stop(Exception):
    """SIGTERM: the agent wants the command gone (timeout, Ctrl-C), or the agent died."""


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):  # elsewhere only the command's descendants are caught
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _stop(*_) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup below must not be interrupted
    raise Stop


def descendants() -> list[int]:
    if not os.path.isdir("/proc/self/task"):  # not Linux: psutil, imported only here
        import psutil

        return [p.pid for p in psutil.Process().children(recursive=True)]
    children: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:  # it exited meanwhile
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])  # the name in () may hold anything
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_descendants() -> None:
    """Kills every descendant until none is left. Orphans reparent here, so reaping until
    ECHILD also waits for processes forked while the previous ones were being killed."""
    while True:
        for pid in descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.01)


def main(agent_pid: int, argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the agent died: clean up as on a timeout
    code = 128 + signal.SIGTERM
    try:
        if os.getppid() != agent_pid:  # it died before PDEATHSIG was set
            raise Stop
        child = subprocess.Popen(argv)
        returncode = child.wait()
        code = 128 - returncode if returncode < 0 else returncode  # as a shell reports a signal
    except Stop:
        pass
    finally:
        kill_descendants()
    return code


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
