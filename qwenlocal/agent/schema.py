"""The JSON type of each tool parameter, from the function schemas offered to the model, and the
decoding of a parameter's text by it (llama.cpp's and vLLM's rules for the XML call format)."""

from __future__ import annotations

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
    fitted = _fit(value, types - {"string"})
    if fitted is not _NOT_JSON:
        return fitted
    if "string" in types:
        return raw
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    raise ValueError(f"must be {' or '.join(sorted(types))} (JSON), not {shown!r}")


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
