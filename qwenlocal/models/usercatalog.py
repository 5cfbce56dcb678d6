"""The user's own `models.toml` (in the config dir, beside config.toml), laid over the shipped one.

An entry with a new name adds a model: a fine-tune or another GGUF of a Qwen3.5 size, usually
with `base = "qwen3.5-4b"` to take that model's architecture, sampling and thinking numbers, so
that only its name, aliases and `source` need writing. An entry with the name (or an alias) of a
shipped model changes the keys it gives, e.g. `source` for another publisher's quants. Every
value is checked here, so a mistake is one line naming the file and the entry (exit 2, as for a
bad config.toml), never a traceback later.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ExitCode, QwenlocalError

NUMBER = (int, float)
FIELDS: dict[str, Any] = {
    "display": str,
    "aliases": list,
    "params_b": NUMBER,
    "layers": int,
    "embedding": int,
    "context_length": int,
    "kv_bytes_per_token": int,
    "recurrent_bytes": int,
    "thinking_default": bool,
    "think_budget": int,
    "sampling": str,
    "source": dict,
    "alternates": list,
}
OPTIONAL = {"alternates"}
NOT_INHERITED = {"display", "aliases", "source", "alternates"}  # what `base` does not give
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "repeat_penalty")
HINT = "fix or remove the file (see README.md, 'Your own models')"


def user_file() -> Path:
    from ..config import _dirs

    return Path(_dirs().user_config_dir) / "models.toml"


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> QwenlocalError:
        return QwenlocalError(f"{self.path}: {where}: {problem}", hint=HINT, code=ExitCode.USAGE)

    def typed(self, where: str, key: str, value: Any, kind: Any) -> None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if type(value) not in kinds or (kind is int and value < 0) or (kind is NUMBER and value <= 0):
            words = {
                str: "text",
                list: "a list",
                dict: "a table",
                bool: "true or false",
                int: "a whole number",
            }
            raise self.fail(where, f"'{key}' must be {words.get(kind, 'a positive number')}, not {value!r}")

    def source(self, where: str, table: dict) -> None:
        repo, quants = table.get("repo"), table.get("quants")
        if not isinstance(repo, str) or repo.count("/") != 1:
            raise self.fail(where, f"'repo' must be a Hugging Face repo id like owner/name, not {repo!r}")
        if not isinstance(quants, dict) or not quants:
            raise self.fail(
                where, "'quants' must be a table of files, e.g. quants.Q4_K_M = { file = ..., bytes = ... }"
            )
        for quant, f in quants.items():
            at = f"{where}, quants.{quant}"
            if (
                not isinstance(f, dict)
                or not isinstance(f.get("file"), str)
                or not f["file"].endswith(".gguf")
            ):
                raise self.fail(at, 'needs file = "NAME.gguf" (the file\'s path in the repo)')
            if type(f.get("bytes")) is not int or f["bytes"] <= 0:
                raise self.fail(at, "needs bytes = the file's size in bytes (the hub lists it)")
            if set(f) - {"file", "bytes", "approx"} or type(f.get("approx", False)) is not bool:
                raise self.fail(at, "takes file, bytes and approx = true|false only")

    def sampling(self, data: dict) -> None:
        for group, modes in data.items():
            for mode in ("thinking", "non_thinking"):
                values = modes.get(mode) if isinstance(modes, dict) else None
                where = f"[sampling.{group}.{mode}]"
                if not isinstance(values, dict) or set(values) != set(SAMPLING_KEYS):
                    raise self.fail(where, f"needs exactly {', '.join(SAMPLING_KEYS)}")
                for key, value in values.items():
                    if type(value) not in NUMBER or value < 0:
                        raise self.fail(where, f"'{key}' must be a number of at least 0, not {value!r}")


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise QwenlocalError(
            f"cannot read the model catalog {path}: {exc}", hint=HINT, code=ExitCode.USAGE
        ) from None


def user_layer(path: Path, shipped: dict) -> tuple[dict, frozenset[str]] | None:
    """The shipped catalog's data with the user's file over it, and the names it added or
    changed; None without a user file."""
    if not path.is_file():
        return None
    user = _read(path)
    check = _Checker(path)
    unknown = sorted(set(user) - {"models", "sampling"})
    if unknown:
        raise check.fail(unknown[0], "unknown table (the file has [models.NAME] and [sampling.NAME] tables)")
    data = copy.deepcopy(shipped)
    if not isinstance(user.get("sampling", {}), dict) or not isinstance(user.get("models", {}), dict):
        raise check.fail("models", "must be tables: [models.NAME], [sampling.NAME.thinking]")
    check.sampling(user.get("sampling", {}))
    data["sampling"].update(user.get("sampling", {}))
    models = data["models"]
    changed = set()
    for name, entry in user.get("models", {}).items():
        changed.add(_entry(check, models, f'[models."{name}"]', name, entry))
    _check_merged(check, data, changed)
    return data, frozenset(changed)


def _alias_owner(models: dict, name: str) -> str | None:
    wanted = name.lower()
    return next((n for n, m in models.items() if wanted in [a.lower() for a in (n, *m["aliases"])]), None)


def _entry(check: _Checker, models: dict, where: str, name: str, entry: Any) -> str:
    """Check one user entry and lay it over `models`; the name it changed."""
    if not isinstance(entry, dict):
        raise check.fail(where, "must be a table of keys")
    unknown = sorted(set(entry) - set(FIELDS) - {"base"})
    if unknown:
        raise check.fail(where, f"unknown key '{unknown[0]}' (known: base, {', '.join(FIELDS)})")
    for key, value in entry.items():
        check.typed(where, key, value, str if key == "base" else FIELDS[key])
    own = {k: v for k, v in entry.items() if k != "base"}
    target = _alias_owner(models, name)
    if target is not None and "base" not in entry:  # a change to a shipped model
        models[target] = {**models[target], **own}
        return target
    if target is not None:
        raise check.fail(where, f"'{name}' is already {target}: a new model with a base needs a new name")
    merged: dict = {"display": name, "aliases": [name]}
    if "base" in entry:
        base = _alias_owner(models, entry["base"])
        if base is None:
            raise check.fail(where, f"base '{entry['base']}' is not a catalog model (see `qwenlocal list`)")
        merged.update({k: v for k, v in models[base].items() if k not in NOT_INHERITED})
    merged.update(own)
    missing = [k for k in FIELDS if k not in merged and k not in OPTIONAL]
    if missing:
        raise check.fail(
            where,
            f"missing '{missing[0]}' (or give base = \"qwen3.5-4b\" to take the numbers of a catalog model)",
        )
    models[name] = merged
    return name


def _check_merged(check: _Checker, data: dict, changed: set[str]) -> None:
    seen: dict[str, str] = {}
    for name, m in data["models"].items():
        where = f'[models."{name}"]'
        if name in changed:
            if not m["aliases"] or not all(isinstance(a, str) and a for a in m["aliases"]):
                raise check.fail(where, "'aliases' must be a non-empty list of names")
            if m["sampling"] not in data["sampling"]:
                raise check.fail(where, f"sampling '{m['sampling']}' is not a [sampling.NAME] table")
            check.source(f"{where}.source", m["source"])
            for i, alt in enumerate(m.get("alternates", [])):
                check.source(f"{where}.alternates[{i}]", alt if isinstance(alt, dict) else {})
        for alias in {a.lower() for a in (name, *m["aliases"])}:
            if seen.setdefault(alias, name) != name:
                other = seen[alias]
                culprit = name if name in changed else other
                raise check.fail(
                    f'[models."{culprit}"]', f"the name '{alias}' is taken by both {other} and {name}"
                )
