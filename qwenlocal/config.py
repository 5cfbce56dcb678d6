"""Paths and settings.

Settings come in layers, each overriding the one before: built-in defaults < the config file
(`config.toml` in the user config dir, or the file named by QWENLOCAL_CONFIG) < QWENLOCAL_*
environment variables < command-line flags. Every value remembers where it came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import Exit, QwenlocalError

APP = "qwenlocal"


def _dirs():
    import platformdirs  # imported here: no work at import time

    return platformdirs.PlatformDirs(APP, appauthor=False)


def config_file() -> Path:
    override = os.environ.get("QWENLOCAL_CONFIG")
    return Path(override).expanduser() if override else Path(_dirs().user_config_dir) / "config.toml"


def data_dir() -> Path:
    """Chat history, conversations, agent transcripts and undo snapshots live here."""
    return Path(_dirs().user_data_dir)


@dataclass(frozen=True)
class Settings:
    """Every option that `run`, `chat` and `agent` share; the same name in each layer."""

    model: str | None = None  # catalog name or .gguf path; None: the hardware pick
    system: str | None = None
    think: bool | None = None  # None: the model's default (0.8B/2B off, 4B/9B on)
    think_budget: int | None = None  # None: the catalog's budget for the model; 0: no budget
    max_tokens: int | None = None  # None: until the model stops or the context is full
    temperature: float | None = None  # None: the model card's value
    seed: int | None = None
    ctx: int | None = None  # None: chosen from memory
    threads: int | None = None
    gpu_layers: int | None = None
    json: bool = False
    verbose: bool = False
    show_reasoning: bool | None = None  # None: on a TTY only
    stdin_timeout: float = 3.0  # seconds to wait for the first byte of piped stdin
    pull: bool = False  # download a missing model without asking
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


_NAMES = [f.name for f in fields(Settings) if f.name != "sources"]
SETTING_NAMES = frozenset(_NAMES)
_TYPES = {f.name: f.type for f in fields(Settings)}


def _convert(name: str, value: Any, origin: str) -> Any:
    kind = _TYPES[name]
    try:
        if value is None:
            return None
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if "int" in kind:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if "float" in kind:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise QwenlocalError(
            f"invalid value {value!r} for '{name}' in {origin}",
            hint=f"'{name}' takes a {kind.split('|')[0].strip()}",
            code=Exit.USAGE,
        ) from None


def _file_layer(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise QwenlocalError(
            f"cannot read the config file {path}: {exc}",
            hint="fix or remove the file (see README.md, 'Configuration')",
            code=Exit.USAGE,
        ) from None
    unknown = sorted(set(data) - set(_NAMES))
    if unknown:
        raise QwenlocalError(
            f"unknown setting '{unknown[0]}' in {path}",
            hint=f"known settings: {', '.join(_NAMES)}",
            code=Exit.USAGE,
        )
    return data


def load_settings(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Merge the layers. `flags` holds only the options given on the command line (None = unset)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file()
    layers = [
        (f"config file {path}", _file_layer(path)),
        (
            "environment",
            {n: env[f"QWENLOCAL_{n.upper()}"] for n in _NAMES if f"QWENLOCAL_{n.upper()}" in env},
        ),
        ("command line", {n: v for n, v in (flags or {}).items() if v is not None}),
    ]
    for origin, layer in layers:
        for name, raw in layer.items():
            label = f"QWENLOCAL_{name.upper()}" if origin == "environment" else origin
            values[name] = _convert(name, raw, label)
            sources[name] = label
    return Settings(**values, sources=sources)


def debug() -> bool:
    return os.environ.get("QWENLOCAL_DEBUG", "") not in ("", "0", "false", "no")
