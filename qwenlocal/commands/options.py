"""Options shared by several commands, defined once so they are spelled the same everywhere,
and the few steps every command starts with (its terminal, its settings, --offline)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import KV_CACHE_TYPES, MAX_CTX, MAX_THREADS, MIN_CTX, Settings
from ..terminal import Terminal


def complete_model(incomplete: str) -> list[str]:
    from ..errors import QwenlocalError
    from ..models.catalog import bundled, load

    try:
        cat = load()
    except QwenlocalError:  # a broken user models.toml: the shipped names still complete
        cat = bundled()
    names = [a for s in cat.models.values() for a in s.aliases[:1]]
    names += [f"{s.aliases[0]}:{q.lower()}" for s in cat.models.values() for q in s.quants]
    return [n for n in names if n.startswith(incomplete.lower())]


# Their bounds are checked by config.load_settings, the one check for flags, environment and file.
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Catalog name (0.8b, 2b, 4b, 9b, 9b:q8_0) or a .gguf path. "
        "Default: the best fit for this machine.",
        autocompletion=complete_model,
    ),
]
System = Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")]
Think = Annotated[
    bool | None,
    typer.Option(
        "--think/--no-think", help="Let the model reason first. Default: on for 4B/9B, off for 0.8B/2B."
    ),
]
ThinkBudget = Annotated[
    int | None,
    typer.Option("--think-budget", help="Stop reasoning after N tokens and answer (0: no budget)."),
]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Stop after N generated tokens.")]
Temperature = Annotated[
    float | None, typer.Option("--temperature", "-t", help="Sampling temperature (0: greedy).")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable answers.")]
Ctx = Annotated[
    int | None,
    typer.Option(
        "--ctx",
        help=f"Context size in tokens, {MIN_CTX} to {MAX_CTX}. Default: fitted to the prompt and memory.",
    ),
]
KvCache = Annotated[
    str | None,
    typer.Option(
        "--kv-cache",
        help=f"KV cache type: {', '.join(KV_CACHE_TYPES)} (q8_0 halves its memory). "
        "Default: f16, or q8_0 when only that makes the context fit.",
    ),
]
Threads = Annotated[
    int | None, typer.Option("--threads", help=f"CPU threads, 1 to {MAX_THREADS}. Default: physical cores.")
]
GpuLayers = Annotated[
    int | None, typer.Option("--gpu-layers", help="Layers to offload to the GPU (-1: all). Default: fitted.")
]
Json = Annotated[bool | None, typer.Option("--json", help="Print one JSON object instead of text.")]
Verbose = Annotated[
    bool | None, typer.Option("--verbose", "-v", help="Print speed and token counts on stderr.")
]
Pull = Annotated[bool | None, typer.Option("--pull", help="Download the model first if it is missing.")]
Offline = Annotated[bool, typer.Option("--offline", help="Use only the local cache (as HF_HUB_OFFLINE=1).")]
Cache = Annotated[
    bool | None,
    typer.Option(
        "--cache/--no-cache",
        help="Keep prompt states on disk, so that the next run starting with the same instructions, "
        "file or conversation does not read them again (default: on).",
    ),
]
CacheMax = Annotated[
    int | None,
    typer.Option(
        "--cache-max",
        metavar="MIB",
        help="MiB the prompt-state cache may take on disk (default: the smaller of 4 GiB and 10% of "
        "the free disk).",
    ),
]
ImageTokens = Annotated[
    int | None,
    typer.Option(
        "--image-tokens",
        help="The most tokens one image becomes, 16 to 4096: fewer is faster, more sees finer detail. "
        "Default: 256 on a CPU, 1024 on a GPU.",
    ),
]
Mmproj = Annotated[
    str | None,
    typer.Option(
        "--mmproj", help="The vision projector GGUF for a .gguf path model (catalog models fetch theirs)."
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ShowReasoning = Annotated[
    bool | None,
    typer.Option(
        "--show-reasoning/--hide-reasoning", help="Reasoning on stderr. Default: shown on a TTY only."
    ),
]

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="QWENLOCAL_SERVER",
        help="Answer through this `qwenlocal serve` (URL). Default: one on this machine's default "
        "port, when it serves the same model file.",
    ),
]
NoServer = Annotated[bool, typer.Option("--no-server", help="Load the model here even if a server has it.")]


def terminal(context: typer.Context) -> Terminal:
    """The terminal `cli.main()` built for this run (a plain one when a test calls the app)."""
    obj = context.find_root().obj
    return obj if isinstance(obj, Terminal) else Terminal()


def settings(offline: bool = False, **flags: Any) -> Settings:
    """Settings from the command's parameters (those that are settings; others are ignored).

    --offline: huggingface_hub reads HF_HUB_OFFLINE when first imported, which is normally after
    this; if it was imported already (the CLI run in-process), its constant is set too."""
    import sys

    from ..config import SETTING_NAMES, load_settings

    loaded = load_settings({k: v for k, v in flags.items() if k in SETTING_NAMES})
    if offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            constants.HF_HUB_OFFLINE = True
    return loaded
