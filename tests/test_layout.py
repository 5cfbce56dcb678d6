"""The shape of the code: only the terminal and the renderers write to the terminal, and the
command line starts without importing the heavy parts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qwenlocal"

# The terminal object, the renderers of events, and the programs that run as their own process
# (the shell supervisor and the search child talk to their parent over stdin/stdout).
ALLOWED = {
    "terminal.py",
    "render.py",
    "agent/view.py",
    "agent/supervise.py",
    "agent/search.py",
    "testing/cli.py",  # swaps sys.stdout/stderr for a test's buffers, and puts them back
    # llama.cpp's own log, dumped on stderr with QWENLOCAL_DEBUG=1 (outside any command; the
    # engine should hand it to the terminal instead: left to the engine's owner)
    "engine/llamacpp.py",
}
WRITES = re.compile(r"\bsys\.(stdout|stderr)\b|(?<![\w.])print\(")


def test_only_the_terminal_and_the_renderers_write_to_stdout_or_stderr():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if WRITES.search(line.split("#")[0]):
                offenders.append(f"qwenlocal/{rel}:{number}: {line.strip()}")
    assert offenders == [], "write through the Terminal instead:\n" + "\n".join(offenders)


def test_every_command_has_its_own_module():
    from qwenlocal.cli import app

    for command in app.registered_commands:
        module = command.callback.__module__
        assert module.startswith("qwenlocal.commands."), (command.name, module)


def test_importing_the_cli_imports_no_heavy_module():
    code = (
        "import sys, qwenlocal.cli; "
        "heavy = ('llama_cpp', 'huggingface_hub', 'rich.markdown', 'rich.console', 'prompt_toolkit'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
