"""`qwenlocal run`: one question, one answer on stdout."""

from __future__ import annotations

from typing import Annotated

import typer

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..prompt_input import compose, read_stdin
from ..terminal import Terminal
from .options import (
    Ctx,
    GpuLayers,
    Json,
    MaxTokens,
    Model,
    NoServer,
    Offline,
    Pull,
    Seed,
    Server,
    ShowReasoning,
    System,
    Temperature,
    Think,
    ThinkBudget,
    Threads,
    Verbose,
    settings,
    terminal,
)


def run(
    context: typer.Context,
    prompt: Annotated[
        str | None, typer.Argument(help="The instruction. Piped stdin is added as material.")
    ] = None,
    model: Model = None,
    system: System = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    verbose: Verbose = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
    server: Server = None,
    no_server: NoServer = False,
) -> None:
    """Answer one prompt and exit. The answer alone goes to stdout.

    Examples: qwenlocal run "why is the sky blue?";
    git diff | qwenlocal run "write a commit message"
    """
    answer(terminal(context), settings(**locals()), prompt, server, not no_server)


def messages_for(settings: Settings, text: str) -> list[dict]:
    system = [{"role": "system", "content": settings.system}] if settings.system else []
    return system + [{"role": "user", "content": text}]


def read_prompt(term: Terminal, settings: Settings, prompt: str | None) -> str:
    stdin = read_stdin(settings.stdin_timeout, getattr(term.stdin, "buffer", None))
    if stdin.timed_out:
        if prompt is None:
            raise QwenlocalError(
                f"no prompt, and no data on stdin after {settings.stdin_timeout:g}s",
                hint="give the prompt as an argument, or pipe text in (QWENLOCAL_STDIN_TIMEOUT waits longer)",
                code=ExitCode.BAD_INPUT,
            )
        term.warn(
            f"note: stdin is open but sent nothing in {settings.stdin_timeout:g}s; answering the prompt "
            "alone (use </dev/null to skip the wait, or QWENLOCAL_STDIN_TIMEOUT to wait longer)"
        )
    return compose(prompt, stdin.text)


def answer(
    term: Terminal,
    settings: Settings,
    prompt: str | None,
    server: str | None = None,
    use_server: bool = False,
) -> None:
    """`server` (--server URL) and `use_server` (False: --no-server): see client.py."""
    from .loading import open_model_or_server

    text = read_prompt(term, settings, prompt)
    loaded = open_model_or_server(term, settings, server, use_server)
    renderer = term.renderer(
        markdown=term.markdown and not settings.json,
        show_reasoning=term.shows_reasoning(settings.show_reasoning),
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
