"""`qwenlocal run`: one question, one answer on stdout."""

from __future__ import annotations

import sys

from .config import Settings
from .errors import Exit, QwenlocalError
from .loader import Loaded, open_model
from .prompt_input import compose, read_stdin
from .render import Renderer, is_tty, loading, warn


def messages_for(settings: Settings, text: str) -> list[dict]:
    system = [{"role": "system", "content": settings.system}] if settings.system else []
    return system + [{"role": "user", "content": text}]


def read_prompt(settings: Settings, prompt: str | None) -> str:
    stdin = read_stdin(settings.stdin_timeout)
    if stdin.timed_out:
        if prompt is None:
            raise QwenlocalError(
                f"no prompt, and no data on stdin after {settings.stdin_timeout:g}s",
                hint="give the prompt as an argument, or pipe text in (QWENLOCAL_STDIN_TIMEOUT waits longer)",
                code=Exit.BAD_INPUT,
            )
        warn(
            f"note: stdin is open but sent nothing in {settings.stdin_timeout:g}s; answering the prompt "
            "alone (use </dev/null to skip the wait, or QWENLOCAL_STDIN_TIMEOUT to wait longer)"
        )
    return compose(prompt, stdin.text)


def run(settings: Settings, prompt: str | None) -> None:
    text = read_prompt(settings, prompt)
    with loading("Loading model"):
        loaded: Loaded = open_model(settings)
    for message in loaded.warnings:
        warn(message)
    show = settings.show_reasoning if settings.show_reasoning is not None else is_tty(sys.stderr)
    renderer = Renderer(
        markdown=is_tty(sys.stdout) and not settings.json,
        show_reasoning=show,
        verbose=settings.verbose,
        json_mode=settings.json,
        model=loaded.label,
    )
    try:
        messages, options = messages_for(settings, text), loaded.generate_options(settings)
        for event in loaded.engine.stream(messages, options, checkpoint=False):
            renderer.handle(event)
    except KeyboardInterrupt:
        renderer.interrupted()
        raise
    finally:
        loaded.engine.close()
