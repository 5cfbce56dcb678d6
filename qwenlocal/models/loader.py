"""From settings to a loaded engine: resolve the name, pick the fit, find the file, load it.

`run`, `chat`, `agent` and `serve` all start here: `plan` says what to load and where each file is
(on disk, or the catalog file still to fetch); the command decides whether to download what is
missing (commands/loading.py); `load` loads it. Nothing here asks or prints: warnings come back in
`Loaded.warnings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import Settings, state_dir, state_limit
from ..engine import Engine, GenerateOptions, LlamaEngine, LoadOptions, check_gguf, with_temperature
from ..errors import ExitCode, QwenlocalError
from . import catalog as catalog_mod
from .catalog import FileTarget, ModelSpec, QuantFile, Sampling
from .hardware import Choice, Hardware, Want, detect, image_tokens_for, pick
from .store import find_local, not_downloaded

# Defaults for a GGUF that is not one of the four catalog sizes.
_GENERIC_SAMPLING = Sampling(0.7, 0.8, 20, 0.0, 1.5, 1.0)


@dataclass
class Loaded:
    engine: Engine
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


@dataclass(frozen=True)
class Plan:
    """What to load: the pick's choice, and the model (with images, its projector too) each as a
    path on disk or the catalog file still to fetch."""

    choice: Choice
    label: str
    model: Path | QuantFile
    projector: Path | QuantFile | None = None

    def missing(self) -> list[QuantFile]:
        """The catalog files still to fetch, the projector first (`pull SIZE --vision`, which its
        refusal names, fetches the model too)."""
        return [f for f in (self.projector, self.model) if isinstance(f, QuantFile)]

    def with_file(self, file: QuantFile, path: Path) -> Plan:
        """This plan with `file` fetched to `path`."""
        if file == self.projector:
            return replace(self, projector=path)
        return replace(self, model=path)

    @property
    def path(self) -> Path:
        """The model file on disk (the plan must have nothing missing)."""
        assert isinstance(self.model, Path), self.missing()
        return self.model

    @property
    def mmproj(self) -> Path | None:
        assert not isinstance(self.projector, QuantFile), self.missing()
        return self.projector

    def not_downloaded(self) -> QwenlocalError:
        return not_downloaded(self.choice.model, self.missing())


def plan(settings: Settings, hw: Hardware | None = None, vision: bool = False) -> Plan:
    """The choice for these settings and where its files are. With `vision`, the pick counts a
    projector's memory too, and the plan has the projector (see `projector_for`)."""
    cat = catalog_mod.load()
    target = catalog_mod.resolve(settings.model, cat)
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
        found: Plan = Plan(choice, str(target.path), target.path)
    else:
        if target is not None and target.quant == "MMPROJ":
            raise QwenlocalError(
                f"{settings.model} is {target.spec.display}'s vision projector, not a model to run",
                hint=f"name the model ({target.spec.aliases[0]}); its projector is loaded for images",
                code=ExitCode.UNKNOWN_MODEL,
            )
        choice = pick(hw, cat, Want(model=target and target.spec, quant=target and target.quant, **want))
        _check_fits(choice, settings, named=target is not None)
        label = f"{choice.model.name}:{choice.quant.quant.lower()}"
        found = Plan(choice, label, find_local(choice.model, choice.quant) or choice.quant)
    if not vision:
        return found
    projector, path = projector_for(settings, choice)
    return replace(found, projector=path or projector)


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
    return choice.model.projector, find_local(choice.model, choice.model.projector)


def image_tokens(settings: Settings, choice: Choice) -> int:
    return settings.image_tokens or image_tokens_for(choice.n_gpu_layers)


def load(settings: Settings, planned: Plan) -> Loaded:
    """Load the planned files (all on disk); what the user should know comes back in
    `Loaded.warnings`."""
    choice, path, label, mmproj = planned.choice, planned.path, planned.label, planned.mmproj
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
