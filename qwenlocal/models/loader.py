"""From settings to a loaded engine: resolve the name, pick the fit, find the file, load it.

`run`, `chat` and `agent` all start here: `plan` says what to load and where it is on disk (or
that it is not downloaded); the command decides whether to download it (commands/loading.py);
`load` loads it. Nothing here asks or prints: warnings come back in `Loaded.warnings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings, state_dir, state_limit
from ..engine import GenerateOptions, LlamaEngine, LoadOptions, check_gguf, with_temperature
from ..errors import ExitCode, QwenlocalError
from . import catalog as catalog_mod
from .catalog import CatalogTarget, FileTarget, ModelSpec, QuantFile, Sampling
from .hardware import Choice, Hardware, Want, detect, image_tokens_for, pick

# Defaults for a GGUF that is not one of the four catalog sizes.
_GENERIC_SAMPLING = Sampling(0.7, 0.8, 20, 0.0, 1.5, 1.0)


@dataclass
class Loaded:
    engine: LlamaEngine
    choice: Choice
    spec: ModelSpec | None  # the catalog model this file is, when known
    label: str
    warnings: list[str] = field(default_factory=list)

    def generate_options(self, settings: Settings) -> GenerateOptions:
        spec = self.spec
        think = settings.think if settings.think is not None else bool(spec and spec.thinking_default)
        sampling = spec.sampling(think) if spec else _GENERIC_SAMPLING
        budget = (
            settings.think_budget
            if settings.think_budget is not None
            else (spec.think_budget if spec else None)
        )
        return GenerateOptions(
            sampling=with_temperature(sampling, settings.temperature),
            think=think,
            think_budget=budget or None,
            max_tokens=settings.max_tokens,
            seed=settings.seed,
        )


def file_spec(path: Path) -> ModelSpec:
    """A stand-in spec for planning memory of an arbitrary GGUF: the larger models' context costs."""
    size = path.stat().st_size
    q = QuantFile("FILE", "", path.name, size)
    return ModelSpec(
        name=path.name,
        display=path.name,
        aliases=(),
        params_b=0.0,
        layers=32,
        embedding=0,
        context_length=262144,
        kv_bytes_per_token=32768,
        recurrent_bytes=52743373,
        thinking_default=False,
        think_budget=0,
        sampling_thinking=_GENERIC_SAMPLING,
        sampling_plain=_GENERIC_SAMPLING,
        quants={"FILE": q},
    )


def plan(
    settings: Settings, hw: Hardware | None = None, vision: bool = False
) -> tuple[Choice, Path | None, str]:
    """The choice for these settings and the local file for it (None: not downloaded). With
    `vision`, the pick counts a projector's memory too (see `projector_for`)."""
    cat = catalog_mod.load()
    # '' is a name too (an unknown one), not "no name": only None leaves the model to the pick
    target = cat.resolve(settings.model) if settings.model is not None else None
    hw = hw or detect()
    want = dict(
        n_ctx=settings.ctx,
        n_gpu_layers=settings.gpu_layers,
        n_threads=settings.threads,
        kv_cache=settings.kv_cache,
    )
    if vision:
        on_gpu = hw.gpu_offload and bool(hw.gpus) and settings.gpu_layers != 0
        want["image_tokens"] = settings.image_tokens or image_tokens_for(-1 if on_gpu else 0)
    if isinstance(target, FileTarget):
        check_gguf(target.path)
        choice = pick(hw, cat, Want(model=file_spec(target.path), quant="FILE", **want))
        _check_fits(choice, settings, named=True)
        return choice, target.path, str(target.path)
    assert target is None or isinstance(target, CatalogTarget)
    choice = pick(hw, cat, Want(model=target and target.spec, quant=target and target.quant, **want))
    _check_fits(choice, settings, named=target is not None)
    from .download import find_local

    label = f"{choice.model.name}:{choice.quant.quant.lower()}"
    return choice, find_local(choice.model, choice.quant), label


def _check_fits(choice: Choice, settings: Settings, named: bool) -> None:
    """Refuse before loading what the pick knows cannot fit: llama.cpp would take the memory for
    many seconds before failing, or be ended by the OOM killer without a word. A model the user
    named without --ctx only gets a warning: the pick then already chose its smallest context."""
    if choice.fits:
        return
    if settings.ctx is not None:
        raise QwenlocalError(
            f"a {settings.ctx}-token context does not fit in this machine's free memory: {choice.reason}",
            hint="use a smaller --ctx, or leave it out to fit the context to memory",
            code=ExitCode.DOES_NOT_FIT,
        )
    if named:
        return
    raise QwenlocalError(
        f"no model fits in this machine's free memory: {choice.reason}",
        hint="close other programs, or choose a model and context yourself (--model 0.8b --ctx 4096)",
        code=ExitCode.DOES_NOT_FIT,
    )


def not_downloaded(choice: Choice) -> QwenlocalError:
    """The error for a catalog model that is not in the cache, naming the command to get it."""
    spec, quant = choice.model, choice.quant
    label = f"{spec.aliases[0]}:{quant.quant.lower()}"
    return QwenlocalError(
        f"{spec.display} {quant.quant} is not downloaded yet ({quant.bytes / 1e9:.1f} GB)",
        hint=f"run `qwenlocal pull {label}`, or add --pull",
        code=ExitCode.NOT_DOWNLOADED,
    )


def projector_for(settings: Settings, choice: Choice) -> tuple[QuantFile | None, Path | None]:
    """The projector to load with this model: (its catalog file or None, its local path or None).

    `--mmproj PATH` wins; a catalog model has its own; a .gguf path model without --mmproj has
    none, and the error says how to give one."""
    if settings.mmproj:
        path = Path(settings.mmproj).expanduser()
        check_gguf(path)
        return None, path
    if choice.quant.quant == "FILE" or choice.model.projector is None:
        raise QwenlocalError(
            f"{choice.model.display} has no vision projector, so it cannot read images",
            hint="give the model's projector GGUF (its mmproj file) with --mmproj PATH",
            code=ExitCode.USAGE,
        )
    from .download import find_local

    return choice.model.projector, find_local(choice.model, choice.model.projector)


def projector_not_downloaded(choice: Choice, projector: QuantFile) -> QwenlocalError:
    """The error for a projector that is not in the cache, naming the command to get it."""
    return QwenlocalError(
        f"{choice.model.display} needs its vision projector to read images, and it is not downloaded "
        f"yet ({projector.bytes / 1e6:.0f} MB)",
        hint=f"run `qwenlocal pull {choice.model.aliases[0]} --vision`, or add --pull",
        code=ExitCode.NOT_DOWNLOADED,
    )


def image_tokens(settings: Settings, choice: Choice) -> int:
    return settings.image_tokens or image_tokens_for(choice.n_gpu_layers)


def load(settings: Settings, choice: Choice, path: Path, label: str, mmproj: Path | None = None) -> Loaded:
    """Load the planned file; what the user should know comes back in `Loaded.warnings`."""
    warnings = [] if choice.fits else [f"this may not fit in memory: {choice.reason}"]
    threads = settings.threads or choice.n_threads
    usable = 2 * (os.cpu_count() or 1)  # more threads than this only slows llama.cpp down
    if threads > usable:
        warnings.append(
            f"{threads} threads ({settings.source('threads')}) is more than this machine can use; "
            f"using {usable} (twice its {os.cpu_count()} logical CPUs)"
        )
        threads = usable
    engine = LlamaEngine(
        path,
        LoadOptions(
            n_ctx=choice.n_ctx,
            n_threads=threads,
            n_gpu_layers=choice.n_gpu_layers,
            # llama.cpp cuts its batch to the context, and asserts if the engine sends more
            n_batch=min(512, choice.n_ctx),
            image_tokens=image_tokens(settings, choice),
            kv_cache=choice.kv_cache,
            # a context the user fixed stays as it is; else it may grow as far as memory allows
            max_ctx=choice.n_ctx if settings.ctx else max(choice.max_ctx, choice.n_ctx),
            state_dir=str(state_dir()) if settings.cache else None,
            state_max=state_limit(settings) if settings.cache else 0,
        ),
        mmproj,
    )
    spec = choice.model if choice.quant.quant != "FILE" else None
    if spec is None and engine.architecture == "qwen35":
        spec = catalog_mod.spec_for_embedding(engine.n_embd)
    return Loaded(engine, choice, spec, label, warnings)
