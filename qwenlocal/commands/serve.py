"""`qwenlocal serve`: an OpenAI- and Anthropic-compatible server that keeps the model loaded."""

from __future__ import annotations

from typing import Annotated

import typer

from ..config import DEFAULT_PORT
from .options import (
    Cache,
    CacheMax,
    Ctx,
    GpuLayers,
    ImageTokens,
    MaxTokens,
    Mmproj,
    Model,
    Offline,
    Pull,
    Seed,
    Temperature,
    Think,
    ThinkBudget,
    Threads,
    settings,
    terminal,
)

Host = Annotated[
    str, typer.Option("--host", help="Address to listen on. Anything but loopback needs --api-key.")
]
Port = Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free one).")]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="QWENLOCAL_API_KEY",
        help="Require this key (Authorization: Bearer KEY, or x-api-key: KEY).",
    ),
]
MaxQueue = Annotated[
    int, typer.Option("--max-queue", min=0, help="Requests that may wait for the one answering (then 429).")
]
CacheRam = Annotated[
    int,
    typer.Option("--cache-ram", min=0, help="MiB of RAM for other conversations' saved states (0: none)."),
]
AllowOrigin = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-origin",
        envvar="QWENLOCAL_ALLOW_ORIGIN",
        metavar="ORIGIN",
        help="Also answer web pages from this origin (scheme://host[:port]; repeat it, or commas; "
        "'*': any). Default: only loopback pages (others get 403).",
    ),
]
AllowHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        envvar="QWENLOCAL_ALLOW_HOST",
        metavar="HOST",
        help="Also answer requests naming this host (repeat it, or commas). Default on loopback: "
        "only loopback names (others get 403).",
    ),
]
KeepAlive = Annotated[
    str | None,
    typer.Option(
        "--keep-alive",
        metavar="DURATION",
        help="Unload the model after this long with no request (30s, 5m, 1h; seconds if bare) and "
        "load it again for the next. Default: 0, never.",
    ),
]
Vision = Annotated[
    bool, typer.Option("--vision", help="Load the vision projector: requests may send images (data: URIs).")
]


def serve(
    context: typer.Context,
    model: Model = None,
    host: Host = "127.0.0.1",
    port: Port = DEFAULT_PORT,
    api_key: ApiKey = None,
    allow_origin: AllowOrigin = None,
    allow_host: AllowHost = None,
    max_queue: MaxQueue = 8,
    cache_ram: CacheRam = 1024,
    keep_alive: KeepAlive = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    pull: Pull = None,
    offline: Offline = False,
    cache: Cache = None,
    cache_max: CacheMax = None,
    vision: Vision = False,
    image_tokens: ImageTokens = None,
    mmproj: Mmproj = None,
) -> None:
    """Serve the model over OpenAI's and Anthropic's APIs (/v1/chat/completions, /v1/responses,
    /v1/messages, /v1/models, /health).

    Examples: qwenlocal serve; qwenlocal serve -m 4b --ctx 32768;
    qwenlocal serve --host 0.0.0.0 --api-key "$KEY"
    """
    from ..models.loader import plan
    from ..server.access import Access
    from ..server.main import Server, check_bind
    from .loading import ready

    term = terminal(context)
    chosen = settings(**locals())  # the engine's settings among the parameters
    check_bind(host, api_key)
    access = Access.of(host, allow_origin or (), allow_host or ())
    vision = vision or mmproj is not None
    planned = ready(term, chosen, plan(chosen, vision=vision))
    Server(term, chosen, planned, host, port, api_key, max_queue, cache_ram, access).run()
