"""Run the CLI in-process, as `cli.main()` would in its own process, with a `Terminal` on
in-memory buffers: `run("run", "-m", path, "hi", input=b"notes")` returns the exit code, stdout
and stderr (the attributes of `subprocess.CompletedProcess`, so a test reads the same either way).

What a command changes for the whole process is put back afterwards: environment variables
(`--offline` sets HF_HUB_OFFLINE), huggingface_hub's constants (read from the environment when it
is imported), `sys.stdin/stdout/stderr` (Click writes --help and completions there) and
`sys.excepthook` (Typer sets its own).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def code(self) -> int:
        return self.returncode


def _reload_hub_constants() -> None:
    module = sys.modules.get("huggingface_hub.constants")
    if module is not None:
        import importlib

        importlib.reload(module)


def run(*args: str, input: bytes | None = b"", env: Mapping[str, str] | None = None) -> Result:
    from ..cli import execute
    from ..terminal import Terminal

    saved_env = dict(os.environ)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_hook = sys.excepthook
    out, err = io.BytesIO(), io.BytesIO()
    stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    try:
        os.environ.update(env or {})
        _reload_hub_constants()
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        try:
            code = execute(list(args), Terminal(stdin, stdout, stderr))
        except SystemExit as done:  # the completion protocol exits
            code = done.code if isinstance(done.code, int) else 0
        stdout.flush()
        stderr.flush()
        return Result(code, out.getvalue(), err.getvalue())
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.excepthook = saved_hook
        os.environ.clear()
        os.environ.update(saved_env)
        _reload_hub_constants()
