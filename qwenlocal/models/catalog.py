"""The model catalog (models.toml) as typed data, and name resolution.

`resolve("4b")`, `resolve("9b:q8_0")`, `resolve("qwen3.5-2b")` and `resolve("2b:mmproj")` (its
vision projector) give a catalog target; `resolve("./file.gguf")` gives a file target. Unknown
names raise an error listing the valid ones. `resolve` is the one place a model name is read.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..errors import ExitCode, QwenlocalError

# Best first. Only these are offered by the picker; others can still be named explicitly.
PICK_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float
    repeat_penalty: float
    frequency_penalty: float = 0.0  # not in the model cards; OpenAI clients send it (the server)


@dataclass(frozen=True)
class QuantFile:
    quant: str
    repo: str
    file: str
    bytes: int
    approx: bool = False


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display: str
    aliases: tuple[str, ...]
    params_b: float
    layers: int
    embedding: int
    context_length: int
    kv_bytes_per_token: int
    recurrent_bytes: int
    thinking_default: bool
    think_budget: int
    sampling_thinking: Sampling
    sampling_plain: Sampling
    quants: dict[str, QuantFile] = field(hash=False)
    alternates: tuple[QuantFile, ...] = ()
    user: bool = False  # added or changed by the user's own models.toml
    # the vision projector's files (quant "MMPROJ"), the default first; () for a text-only model
    projectors: tuple[QuantFile, ...] = ()
    vision_bytes_per_token: int = 0  # the image encoder's compute buffer per image token

    @property
    def projector(self) -> QuantFile | None:
        return self.projectors[0] if self.projectors else None

    def sampling(self, thinking: bool) -> Sampling:
        return self.sampling_thinking if thinking else self.sampling_plain

    def quant(self, quant: str) -> QuantFile:
        key = quant.upper()
        if key not in self.quants:
            raise QwenlocalError(
                f"{self.display} has no quantization '{quant}'",
                hint=f"choose one of: {', '.join(q.lower() for q in self.quants)}",
                code=ExitCode.UNKNOWN_MODEL,
            )
        return self.quants[key]


@dataclass(frozen=True)
class CatalogTarget:
    """A catalog model, with the quantization the user asked for (None: let the picker choose;
    "MMPROJ": its vision projector, named `SIZE:mmproj`)."""

    spec: ModelSpec
    quant: str | None = None

    @property
    def file(self) -> QuantFile | None:
        """The one file named, or None when the name leaves the quantization to the pick."""
        if self.quant == "MMPROJ":
            return self.spec.projector
        return self.spec.quant(self.quant) if self.quant else None

    @property
    def name(self) -> str:
        return self.spec.aliases[0] + (f":{self.quant.lower()}" if self.quant else "")


@dataclass(frozen=True)
class FileTarget:
    path: Path


Target = CatalogTarget | FileTarget


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]

    def by_alias(self) -> dict[str, ModelSpec]:
        table = {}
        for spec in self.models.values():
            for alias in (spec.name, *spec.aliases):
                table[alias.lower()] = spec
        return table

    def resolve(self, name: str) -> Target:
        if looks_like_path(name):
            return FileTarget(Path(name).expanduser())
        base, _, quant = name.strip().lower().partition(":")
        # "qwen3.5:9b" is an alias; "9b:q8_0" is a model with a quantization.
        table = self.by_alias()
        if name.strip().lower() in table:
            return CatalogTarget(table[name.strip().lower()])
        spec = table.get(base)
        if spec is None:
            raise self.unknown(name)
        if quant == "mmproj" and spec.projector is not None:
            return CatalogTarget(spec, "MMPROJ")
        if quant:
            return CatalogTarget(spec, spec.quant(quant).quant)
        return CatalogTarget(spec)

    def unknown(self, name: str) -> QwenlocalError:
        valid = ", ".join(spec.aliases[0] for spec in self.models.values())
        close = difflib.get_close_matches(name.lower(), list(self.by_alias()), n=1)
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        return QwenlocalError(
            f"unknown model '{name}'",
            hint=f"{suggestion}valid models: {valid} (optionally with a quantization, e.g. "
            "4b:q8_0), their full names (qwen3.5-4b), or a path to a .gguf file",
            code=ExitCode.UNKNOWN_MODEL,
        )


def looks_like_path(name: str) -> bool:
    return (
        name.lower().endswith(".gguf")
        or any(s in name for s in ("/", "\\"))
        or name[:1]
        in (
            ".",
            "~",
        )
    )


def _quant_files(repo: str, table: dict) -> dict[str, QuantFile]:
    return {
        q.upper(): QuantFile(q.upper(), repo, f["file"], int(f["bytes"]), bool(f.get("approx")))
        for q, f in table.items()
    }


def parse(data: dict, user: frozenset[str] = frozenset()) -> Catalog:
    """The catalog of models.toml's data; the models named in `user` come from the user's file."""
    sampling = {
        (group, mode == "thinking"): Sampling(**values)
        for group, modes in data["sampling"].items()
        for mode, values in modes.items()
    }
    models = {}
    for name, m in data["models"].items():
        source = m["source"]
        alternates = tuple(
            qf for alt in m.get("alternates", ()) for qf in _quant_files(alt["repo"], alt["quants"]).values()
        )
        models[name] = ModelSpec(
            name=name,
            display=m["display"],
            aliases=tuple(m["aliases"]),
            params_b=float(m["params_b"]),
            layers=int(m["layers"]),
            embedding=int(m["embedding"]),
            context_length=int(m["context_length"]),
            kv_bytes_per_token=int(m["kv_bytes_per_token"]),
            recurrent_bytes=int(m["recurrent_bytes"]),
            thinking_default=bool(m["thinking_default"]),
            think_budget=int(m["think_budget"]),
            sampling_thinking=sampling[(m["sampling"], True)],
            sampling_plain=sampling[(m["sampling"], False)],
            quants=_quant_files(source["repo"], source["quants"]),
            alternates=alternates,
            projectors=_projectors(m),
            vision_bytes_per_token=int(m.get("mmproj", {}).get("compute_bytes_per_token", 0)),
            user=name in user,
        )
    return Catalog(models)


def _projectors(m: dict) -> tuple[QuantFile, ...]:
    tables = ([m["mmproj"]] if "mmproj" in m else []) + list(m.get("mmproj_alternates", ()))
    return tuple(
        QuantFile("MMPROJ", t["repo"], t["file"], int(t["bytes"]), bool(t.get("approx"))) for t in tables
    )


def bundled_path() -> Path:
    """The catalog qwenlocal ships: `models.toml` at the repository's top level, which a wheel
    carries inside the package (setup.py copies it there); a checkout or an editable install
    reads it where it is."""
    packaged = Path(__file__).parents[1] / "models.toml"  # qwenlocal/models.toml
    return packaged if packaged.is_file() else Path(__file__).resolve().parents[2] / "models.toml"


@cache
def _bundled_data() -> dict:
    return tomllib.loads(bundled_path().read_text(encoding="utf-8"))


@cache
def bundled() -> Catalog:
    """The shipped catalog alone."""
    return parse(_bundled_data())


def load() -> Catalog:
    """The shipped catalog with the user's own `models.toml` (config dir) over it, if any."""
    from .usercatalog import user_file, user_layer

    layer = user_layer(user_file(), _bundled_data())
    if layer is None:
        return bundled()
    data, names = layer
    return parse(data, user=names)


def resolve(name: str | None, catalog: Catalog | None = None) -> Target | None:
    """What a model name means, in `catalog` (by default the shipped one with the user's entries);
    None for no name (the pick chooses). '' is a name too (an unknown one)."""
    return None if name is None else (catalog or load()).resolve(name)


def spec_for_embedding(n_embd: int) -> ModelSpec | None:
    """The catalog model a GGUF of this width is (llama.cpp tells the sizes apart the same way)."""
    return next((s for s in load().models.values() if s.embedding == n_embd), None)
