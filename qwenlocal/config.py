"""Paths and settings.

Settings come in layers, each overriding the one before: built-in defaults < the config file
(`config.toml` in the user config dir, or the file named by QWENLOCAL_CONFIG) < QWENLOCAL_*
environment variables < command-line flags. Every value remembers where it came from.
"""

from __future__ import annotations

import math
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ExitCode, QwenlocalError

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


def state_dir() -> Path:
    """Model states kept between processes (engine/diskstate.py): a cache, safe to delete."""
    return Path(_dirs().user_cache_dir) / "states"


def run_dir() -> Path:
    """Running servers' run-state files (server/runstate.py): the user runtime dir (emptied at
    log-out and boot), or a folder in the user state dir where there is none."""
    import sys
    import warnings

    dirs = _dirs()
    if os.name == "posix" and sys.platform != "darwin":
        given = os.environ.get("XDG_RUNTIME_DIR", "")
        if not os.path.isdir(given or f"/run/user/{os.getuid()}"):
            return Path(dirs.user_state_dir) / "run"
    with warnings.catch_warnings():  # newer platformdirs warn of a runtime dir they will not use
        warnings.simplefilter("ignore")
        return Path(dirs.user_runtime_dir)


def state_limit(settings: Settings) -> int:
    """The bytes the state cache may take: `cache_max` MiB, or the smaller of 4 GiB and a tenth
    of the free disk where it lives."""
    import shutil

    if settings.cache_max is not None:
        return settings.cache_max << 20
    folder = state_dir()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    return min(4 << 30, free // 10)


# The most threads ggml can run (GGML_MAX_N_THREADS): past it llama.cpp overruns fixed arrays and
# crashes. A fixed bound keeps a config file valid on every machine; the loader then caps what
# this machine can use (thousands of threads on a few cores spin-wait long enough to look hung).
MAX_THREADS = 512
# Qwen3.5's native context; llama.cpp keeps n_ctx in 32 bits, and a larger one cannot help.
MAX_CTX = 262144
MIN_CTX = 256  # below this even a short prompt and its template do not fit
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")  # llama.cpp's K/V cache types that qwenlocal offers
DEFAULT_PORT = 11435  # `serve`'s, beside Ollama's 11434; `run` and `chat` look for a server there


def _bounds(low: float | None = None, high: float | None = None):
    """A setting's valid range, kept with the field: the one check for flags, env and file."""
    return {"range": (low, high)}


@dataclass(frozen=True)
class Settings:
    """Every option that `run`, `chat` and `agent` share; the same name in each layer."""

    model: str | None = None  # catalog name or .gguf path; None: the hardware pick
    system: str | None = None
    think: bool | None = None  # None: the model's default (0.8B/2B off, 4B/9B on)
    # None: the catalog's budget for the model; 0: no budget
    think_budget: int | None = field(default=None, metadata=_bounds(0))
    # None: until the model stops or the context is full
    max_tokens: int | None = field(default=None, metadata=_bounds(1))
    temperature: float | None = field(default=None, metadata=_bounds(0.0))  # None: the model card's
    seed: int | None = None  # any integer: the engine keeps its low 32 bits
    ctx: int | None = field(default=None, metadata=_bounds(MIN_CTX, MAX_CTX))  # None: from memory
    # the KV cache's type; None: f16, or q8_0 when only that makes the context fit (hardware.pick)
    kv_cache: str | None = field(default=None, metadata={"choices": KV_CACHE_TYPES})
    threads: int | None = field(default=None, metadata=_bounds(1, MAX_THREADS))
    gpu_layers: int | None = field(default=None, metadata=_bounds(-1))  # -1: all
    json: bool = False
    verbose: bool = False
    show_reasoning: bool | None = None  # None: on a TTY only
    # seconds to wait for the first byte of piped stdin (a day at most: select() needs a finite wait)
    stdin_timeout: float = field(default=3.0, metadata=_bounds(0.0, 86400.0))
    pull: bool = False  # download a missing model without asking
    # the most tokens one image becomes (None: 256 on a CPU, 1024 on a GPU)
    image_tokens: int | None = field(default=None, metadata=_bounds(16, 4096))
    mmproj: str | None = None  # a projector GGUF for a .gguf path model (catalog models know theirs)
    cache: bool = True  # keep prompt states on disk between processes (engine/diskstate.py)
    # MiB the state cache may take on disk; None: the smaller of 4 GiB and 10% of the free disk
    cache_max: int | None = field(default=None, metadata=_bounds(0))
    instructions: bool = True  # the agent reads AGENTS.md / QWEN.md into its system prompt
    # seconds an MCP server's tool may take before the call ends as an error
    mcp_timeout: float = field(default=60.0, metadata=_bounds(0.1, 3600.0))
    # seconds `serve` keeps the model loaded with no request (then unloads it until the next); 0: always
    keep_alive: float = field(default=0.0, metadata={"duration": True})
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "sources"}
_NAMES = list(_FIELDS)
SETTING_NAMES = frozenset(_NAMES)


def _kind(hint: Any) -> type:
    """A setting's type from its hint: `int`, or `int | None` (an unset default)."""
    return next(t for t in (typing.get_args(hint) or (hint,)) if t is not type(None))


_KIND = {n: _kind(hint) for n, hint in typing.get_type_hints(Settings).items() if n in _FIELDS}
_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def describe(name: str) -> str:
    """What a setting takes, in words: the hint of every error about it."""
    if _FIELDS[name].metadata.get("duration"):
        return "a duration: seconds, or a number with s, m, h or d (30s, 5m, 1h30m; 0: never)"
    choices = _FIELDS[name].metadata.get("choices")
    if choices:
        return "one of " + ", ".join(choices)
    low, high = _FIELDS[name].metadata.get("range", (None, None))
    what = _WORDS[_KIND[name]]
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    return f"{what} of at least {low:g}" if low is not None else what


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds (text or a number) or a duration such as 30s, 5m, 1h,
    1h30m, 1.5h; ValueError (or TypeError) for anything else, negatives included."""
    import re

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            value = float(text)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(value)
            value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(value) or value < 0:
        raise ValueError(value)
    return float(value)


def _from_text(kind: type, text: str) -> Any:
    """An environment variable's text as the setting's type."""
    if kind is bool:
        word = text.strip().lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(text)
        return word in ("1", "true", "yes", "on")
    if kind is str:
        text.encode("utf-8")  # bytes that are not UTF-8 arrive as lone surrogates: refused here
        return text
    return kind(text.strip())


def _typed(kind: type, value: Any) -> Any:
    """A value that already has a type (TOML, a flag) must be that type: no bool for a number,
    no number for a switch, no table or array for text; an int is a fine float."""
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:
        raise TypeError(value)
    return value


def _convert(name: str, value: Any, origin: str) -> Any:
    """The one validation of a setting, whatever layer it came from."""
    kind = _KIND[name]
    try:
        if _FIELDS[name].metadata.get("duration"):  # text in every layer, or a number in a file
            converted = parse_duration(value)
        elif origin.startswith("QWENLOCAL_"):
            converted = _from_text(kind, value)
        else:
            converted = _typed(kind, value)
        if _within(name, converted):
            return converted
    except (TypeError, ValueError):
        pass
    where = _where(name, origin)
    raise QwenlocalError(
        f"invalid value {value!r} for {where}", hint=f"{where} takes {describe(name)}", code=ExitCode.USAGE
    )


def _where(name: str, origin: str) -> str:
    """How the user wrote the setting: --max-tokens, QWENLOCAL_MAX_TOKENS or 'max_tokens' in a file."""
    if origin == "command line":
        return f"--{name.replace('_', '-')}"
    return origin if origin.startswith("QWENLOCAL_") else f"'{name}' in {origin}"


def _within(name: str, value: Any) -> bool:
    """In range, and finite: inf and nan are not numbers a setting can use."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    choices = _FIELDS[name].metadata.get("choices")
    if choices is not None and value not in choices:
        return False
    low, high = _FIELDS[name].metadata.get("range", (None, None))
    return (low is None or value >= low) and (high is None or value <= high)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise QwenlocalError(
            f"cannot read the config file {path}: {exc}",
            hint="fix or remove the file (see README.md, 'Configuration')",
            code=ExitCode.USAGE,
        ) from None


def _file_layer(path: Path) -> dict[str, Any]:
    data = {k: v for k, v in _read_file(path).items() if k != "mcp"}  # tables: mcp_servers()
    unknown = sorted(set(data) - set(_NAMES))
    if unknown:
        raise QwenlocalError(
            f"unknown setting '{unknown[0]}' in {path}",
            hint=f"known settings: {', '.join(_NAMES)}",
            code=ExitCode.USAGE,
        )
    return data


_MCP_KEYS = {"command": "text", "args": "an array of text", "env": "a table of text values"}


def mcp_servers() -> dict[str, dict[str, Any]]:
    """The config file's `[mcp.NAME]` tables (the agent's MCP servers): NAME -> {"command": str,
    "args": list[str], "env": dict[str, str]}, each checked; exit 2 naming the bad one."""
    path = config_file()
    tables = _read_file(path).get("mcp", {})

    def bad(what: str, hint: str) -> QwenlocalError:
        return QwenlocalError(f"{what} in {path}", hint=hint, code=ExitCode.USAGE)

    example = 'e.g. [mcp.files] command = "npx", args = ["-y", "some-server"]'
    if not isinstance(tables, dict):
        raise bad("'mcp' must be tables [mcp.NAME]", example)
    servers = {}
    for name, table in tables.items():
        where = f"[mcp.{name}]"
        if not isinstance(table, dict):
            raise bad(f"'mcp.{name}' must be a table", example)
        if not name or not all(c.isalnum() or c in "_-" for c in name) or "__" in name:
            raise bad(f"the MCP server name '{name}' is not usable", "use letters, digits, - and single _")
        unknown = sorted(set(table) - set(_MCP_KEYS))
        if unknown:
            raise bad(f"unknown key '{unknown[0]}' in {where}", f"{where} takes command, args and env")
        command, args, env = table.get("command"), table.get("args", []), table.get("env", {})
        checks = {
            "command": isinstance(command, str) and bool(command.strip()),
            "args": isinstance(args, list) and all(isinstance(a, str) for a in args),
            "env": isinstance(env, dict) and all(isinstance(v, str) for v in env.values()),
        }
        for key, ok in checks.items():
            if not ok:
                raise bad(f"invalid '{key}' in {where}", f"'{key}' takes {_MCP_KEYS[key]}; {example}")
        servers[name] = {"command": command, "args": list(args), "env": dict(env)}
    return servers


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
