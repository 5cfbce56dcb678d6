"""`qwenlocal run`: one question, one answer on stdout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..prompt_input import compose
from ..structured import HeldAnswer, Structure
from ..terminal import Terminal
from .options import (
    Cache,
    CacheMax,
    Ctx,
    GpuLayers,
    ImageTokens,
    Json,
    KvCache,
    MaxTokens,
    Mmproj,
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
    kv_cache: KvCache = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    verbose: Verbose = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
    cache: Cache = None,
    cache_max: CacheMax = None,
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", help="An image for the model to see (PNG, JPEG, GIF, BMP); repeatable."),
    ] = None,
    image_tokens: ImageTokens = None,
    mmproj: Mmproj = None,
    server: Server = None,
    no_server: NoServer = False,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            help="Answer with JSON valid for this JSON schema (a file, or the schema itself). "
            "Exit 17 if the answer is cut short.",
        ),
    ] = None,
    json_object: Annotated[
        bool, typer.Option("--json-object", help="Answer with a JSON object (any). Exit 17 if cut short.")
    ] = False,
) -> None:
    """Answer one prompt and exit. The answer alone goes to stdout.

    Examples: qwenlocal run "why is the sky blue?";
    git diff | qwenlocal run "write a commit message";
    qwenlocal run --image photo.png "what is in it?"; cat photo.jpg | qwenlocal run "describe";
    qwenlocal run --schema invoice.schema.json < invoice.txt | jq .total
    """
    from ..structured import structure_for

    structure = structure_for(schema, json_object)  # per call, never a setting: checked first
    answer(terminal(context), settings(**locals()), prompt, image or [], server, not no_server, structure)


def messages_for(settings: Settings, content) -> list[dict]:
    system = [{"role": "system", "content": settings.system}] if settings.system else []
    return system + [{"role": "user", "content": content}]


DESCRIBE = "Describe this image."  # the instruction for an image given without one


def read_input(term: Terminal, settings: Settings, prompt: str | None, files: list[Path]):
    """The user message's content: text, or images (files, then an image on stdin) and text.
    Every image is checked before any model is loaded (exit 7 with the reason)."""
    from .. import images

    pictures = [images.read(path) for path in files]
    stdin = term.read_stdin(settings.stdin_timeout)
    if stdin.image is not None:
        pictures.append(images.load(stdin.image, "stdin"))
    if pictures and not (prompt or "").strip() and not stdin.text:
        prompt = DESCRIBE
    text = _compose(term, settings, prompt, stdin)
    return images.with_images(text, pictures), stdin.text


def beginnings(settings: Settings, content, material: str | None) -> list[list[dict]]:
    """The beginnings of the prompt worth keeping on disk for the next run (engine.stream's
    `keep`): the system prompt, and the piped material with the images, which come first (a
    second question about the same file then reads only the question)."""
    from .. import images

    keep = [messages_for(settings, "")] if settings.system else []
    if material is not None and material.strip():
        pictures = images.images_of([{"content": content}])
        keep.append(messages_for(settings, images.with_images(compose(None, material), pictures)))
    return keep


def _compose(term: Terminal, settings: Settings, prompt: str | None, stdin) -> str:
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
    files: list[Path] = (),
    server: str | None = None,
    use_server: bool = False,
    structure: Structure | None = None,
) -> None:
    """`server` (--server URL) and `use_server` (False: --no-server): see engine/remote.py. `structure`:
    the answer must be JSON of it (--schema, --json-object), held back until it validates."""
    from ..models.sizing import size_run
    from .loading import open_model

    content, material = read_input(term, settings, prompt, list(files))
    loaded = open_model(term, settings, not isinstance(content, str), server, use_server)
    messages, options = messages_for(settings, content), loaded.generate_options(settings)
    if structure is not None:
        options = replace(options, grammar=structure.grammar())
    if loaded.engine.can_resize:  # a server's context is the server's
        default, kv = loaded.engine.n_ctx, loaded.engine.kv_cache
        try:
            sized = size_run(loaded, settings, messages, options.think)
        except BaseException:
            loaded.engine.close()
            raise
        if sized is not None:
            term.warn(sized.notice(default, kv))
    renderer = term.renderer(
        markdown=term.markdown and not settings.json and structure is None,
        show_reasoning=term.shows_reasoning(settings.show_reasoning),
        verbose=settings.verbose,
        json_mode=settings.json,
        model=loaded.label,
    )
    sink = renderer if structure is None else HeldAnswer(structure, renderer, term)
    try:
        keep = beginnings(settings, content, material)
        for event in loaded.engine.stream(messages, options, checkpoint=False, keep=keep):
            sink.handle(event)
    except KeyboardInterrupt:
        sink.interrupted()
        raise
    finally:
        loaded.engine.close()
