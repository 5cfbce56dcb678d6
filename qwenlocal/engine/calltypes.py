"""The JSON type of each tool parameter, from the function schemas offered to the model, and the
decoding of a parameter's text by it (llama.cpp's and vLLM's rules for the XML call format).

Where JSON does not decode, the Python literals small models write are read as vLLM and SGLang
read them: `True`/`False`/`None`, and single-quoted dicts and lists (`{'a': 1}`), by
`ast.literal_eval` (a literal, never code run); a JSON string that holds an object or array
(double-encoded) is decoded once more."""

from __future__ import annotations

import ast
import json

ParamTypes = dict[str, frozenset[str]]  # parameter name -> the JSON types its schema admits

_NOT_JSON = object()


def param_types(tools: list[dict]) -> dict[str, ParamTypes]:
    """Tool name -> its parameters' types; `tools` as offered ({"type": "function", "function":
    {...}}) or the bare function objects."""
    found = {}
    for tool in tools:
        function = tool.get("function", tool)
        properties = (function.get("parameters") or {}).get("properties") or {}
        found[function["name"]] = {name: types_of(schema) for name, schema in properties.items()}
    return found


def types_of(schema: object) -> frozenset[str]:
    """The JSON types a schema admits; empty when it does not say (the value is then text), as for
    a schema that is not an object (a client's tools reach here as they were sent)."""
    if not isinstance(schema, dict):
        return frozenset()
    kind = schema.get("type")
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list):
        return frozenset(k for k in kind if isinstance(k, str))
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return frozenset().union(*(types_of(s) for s in schema[key]))
    if isinstance(schema.get("enum"), list):
        return frozenset(json_type(v) for v in schema["enum"])
    if "const" in schema:
        return frozenset({json_type(schema["const"])})
    return frozenset()


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, python in (("integer", int), ("number", float), ("string", str), ("array", list)):
        if isinstance(value, python):
            return kind
    return "object"


def decode(raw: str, types: frozenset[str] | None):
    """A parameter's value from its text: the exact text for a string (or an unknown parameter),
    JSON for the other types; ValueError, worded for the model, when it does not decode."""
    if not types or types == {"string"}:
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        value = _NOT_JSON
    others = types - {"string"}
    for candidate in (value, _literal(raw), _inner(value, others)):
        fitted = _fit(candidate, others)
        if fitted is not _NOT_JSON:
            return fitted
    if "string" in types:
        return raw
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    raise ValueError(f"must be {' or '.join(sorted(types))} (JSON), not {shown!r}")


_LITERALS = {"True": True, "False": False, "None": None}
_MAX_LITERAL = 1_000_000  # characters: literal_eval of a huge text is slow and deep recursion


def _literal(raw: str):
    """A Python literal's value when it is one JSON can hold (dicts with text keys, lists, text,
    numbers, booleans, None), else _NOT_JSON. Parsed, never evaluated."""
    text = raw.strip()
    if text in _LITERALS:
        return _LITERALS[text]
    if not text.startswith(("{", "[")) or len(text) > _MAX_LITERAL:
        return _NOT_JSON
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_JSON
    return value if _jsonable(value) else _NOT_JSON


def _jsonable(value, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_jsonable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v, depth + 1) for k, v in value.items())
    return False  # tuples, sets, bytes, complex: not JSON


def _inner(value, types: frozenset[str]):
    """A JSON string holding an object or array (double-encoded), decoded; else _NOT_JSON."""
    if not isinstance(value, str) or not types & {"object", "array"}:
        return _NOT_JSON
    try:
        return json.loads(value)
    except ValueError:
        return _literal(value)


def _fit(value, types: frozenset[str]):
    """The value if one of the types admits it (an integral number is an integer), else _NOT_JSON."""
    if value is _NOT_JSON:
        return value
    kind = json_type(value)
    if kind in types or (kind == "integer" and "number" in types):
        return value
    if kind == "number" and "integer" in types and value.is_integer():
        return int(value)
    return _NOT_JSON
