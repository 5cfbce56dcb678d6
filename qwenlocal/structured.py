"""Structured answers: a JSON schema read and checked (`run --schema`, a server's `response_format`),
turned into a grammar by llama.cpp's converter (engine/grammar.py), and the answer validated
against it with `jsonschema` before anyone reads it as valid.

The checks refuse, with the reason in one line, what the grammar could not guarantee: text that is
not JSON, JSON that is not a schema, keywords the converter ignores (it would let through answers
the schema forbids), and a `$ref` to anything but this document (never fetched).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ExitCode, QwenlocalError

# Keywords that constrain a value but that llama.cpp's converter (llama-cpp-python 0.3.36) ignores.
UNSUPPORTED = frozenset(
    "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf not if then else dependentRequired "
    "dependentSchemas dependencies patternProperties propertyNames minProperties maxProperties "
    "uniqueItems contains minContains maxContains unevaluatedProperties unevaluatedItems "
    "additionalItems $dynamicRef $recursiveRef".split()
)
# What the converter reads only in some company: each of these is dropped beside the key.
CONSTRAINTS = frozenset(
    "type properties required additionalProperties items prefixItems minItems maxItems minLength "
    "maxLength pattern format enum const allOf anyOf oneOf".split()
)
SCHEMA_KEYS = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")


class SchemaProblem(ValueError):
    """Why a schema cannot be used, in one line."""


@dataclass(frozen=True)
class Structure:
    """What the answer must be: JSON valid for `schema` (None: any JSON object)."""

    schema: dict | None

    def grammar(self):
        """The engine's grammar for it (llama.cpp's converter); SchemaProblem when it has none."""
        from .engine.grammar import GrammarError, json_grammar

        try:
            return json_grammar(None if self.schema is None else plain(self.schema))
        except GrammarError as error:
            raise SchemaProblem(str(error)) from None

    def validate(self, answer: str) -> object:
        """The answer's value; SchemaProblem with the validator's reason when it is not valid."""
        try:
            value = json.loads(answer)
        except ValueError as error:
            raise SchemaProblem(f"the answer is not JSON: {error}") from None
        if self.schema is None:
            if not isinstance(value, dict):
                raise SchemaProblem("the answer is not a JSON object")
            return value
        from jsonschema.exceptions import best_match

        error = best_match(_validator(self.schema).iter_errors(value))
        if error is not None:
            where = "/" + "/".join(str(p) for p in error.path)
            raise SchemaProblem(f"the answer does not match the schema at {where}: {error.message}")
        return value


def _validator(schema: dict):
    from jsonschema import validators

    return validators.validator_for(schema)(schema)


def read_schema(arg: str) -> dict:
    """`--schema FILE|JSON`: a file's schema, or the schema itself given inline."""
    text = arg
    if not arg.lstrip().startswith("{"):
        path = Path(arg).expanduser()
        if not path.is_file():
            raise SchemaProblem(f"no schema file {arg}" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SchemaProblem(f"cannot read {arg}: {error}") from None
    try:
        schema = json.loads(text)
    except ValueError as error:
        raise SchemaProblem(f"not JSON: {error}") from None
    return schema


def check(schema: object) -> Structure:
    """A schema the grammar can honour: a valid JSON schema, local refs only, nothing ignored."""
    if not isinstance(schema, dict):
        raise SchemaProblem(f"not a JSON schema: a schema is a JSON object, not {_kind(schema)}")
    from jsonschema.exceptions import SchemaError

    try:
        _validator(schema).check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.path)
        raise SchemaProblem(
            f"not a JSON schema: {error.message}" + (f" (at /{where})" if where else "")
        ) from None
    _walk(schema, "", schema)
    structure = Structure(schema)
    structure.grammar()  # the converter's own refusals, before any model is loaded
    return structure


def _kind(value: object) -> str:
    return {bool: "true or false", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), "a number"
    )


def _walk(schema: object, where: str, root: dict) -> None:
    if not isinstance(schema, dict):
        return
    at = f" (at {where or '/'})"
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise SchemaProblem(f"$ref {ref!r} points outside the schema: only local refs (#/...), none fetched")
    found = sorted(UNSUPPORTED & schema.keys())
    if found:
        names = ", ".join(found)
        raise SchemaProblem(f"llama.cpp's converter cannot honour {names}{at}")
    _company(schema, at)
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and ('"' in pattern or "\\\\" in pattern):
        raise SchemaProblem(
            f"llama.cpp's converter writes a pattern's quote or backslash into the JSON unescaped{at}"
        )
    for i, part in enumerate(schema.get("allOf") or ()):
        _all_of_part(part, root, f" (at {where}/allOf/{i})")
    for key in SCHEMA_KEYS:
        if isinstance(schema.get(key), dict):
            _walk(schema[key], f"{where}/{key}", root)
    for key in SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                _walk(sub, f"{where}/{key}/{i}", root)
    for key in SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                _walk(sub, f"{where}/{key}/{name}", root)


def _all_of_part(part: object, root: dict, at: str) -> None:
    """The converter reads an allOf as an object made of its parts' properties (one `anyOf` deep):
    a part that says anything else (an enum, a type other than object) is dropped."""
    if isinstance(part, dict) and isinstance(part.get("$ref"), str):
        part = _resolve(root, part["$ref"])
    if not isinstance(part, dict):
        return
    if "anyOf" in part:
        for sub in part["anyOf"] if isinstance(part["anyOf"], list) else ():
            _all_of_part(sub, root, at)
        return
    said = (CONSTRAINTS - {"properties", "required", "additionalProperties"}) & part.keys()
    if said and part.get("type") != "object" or said - {"type"}:
        raise SchemaProblem(
            f"llama.cpp's converter reads only the properties of allOf's parts, not "
            f"{', '.join(sorted(said))}{at}"
        )


def _resolve(root: dict, ref: str) -> object:
    """A local `#/a/b` ref's target (None when it has none; the converter then says why)."""
    target: object = root
    for step in ref.lstrip("#").strip("/").split("/") if ref.strip("#/") else ():
        step = step.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or step not in target:
            return None
        target = target[step]
    return target


def _company(schema: dict, at: str) -> None:
    """Keywords the converter drops because of another one beside them."""
    others = CONSTRAINTS & schema.keys()
    others_but_type = others - {"type"}  # a type beside them is checked when the answer is
    for key, drops in (("$ref", others_but_type), ("anyOf", others_but_type - {"anyOf"}),
                       ("oneOf", others_but_type - {"oneOf"})):  # fmt: skip
        if key in schema and drops:
            raise SchemaProblem(f"llama.cpp's converter ignores {', '.join(sorted(drops))} beside {key}{at}")
    if isinstance(schema.get("type"), list) and others - {"type", "enum", "const"}:
        kept = ", ".join(sorted(others - {"type", "enum", "const"}))
        raise SchemaProblem(f"llama.cpp's converter ignores {kept} when type is a list{at}")
    if "prefixItems" in schema and "items" in schema:
        raise SchemaProblem(f"llama.cpp's converter ignores prefixItems beside items{at}")
    if "allOf" in schema and others & {"properties", "additionalProperties", "items", "pattern"}:
        raise SchemaProblem(f"llama.cpp's converter ignores allOf beside properties{at}")
    if (
        isinstance(schema.get("items") or schema.get("prefixItems"), list)
        and {"minItems", "maxItems"} & others
    ):
        raise SchemaProblem(f"llama.cpp's converter ignores minItems and maxItems for a tuple{at}")
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    extra = schema.get("additionalProperties")
    if (extra is True or isinstance(extra, dict)) and any(
        plain(p) != plain(extra) for p in properties.values()
    ):
        raise SchemaProblem(
            "llama.cpp's converter lets an additional property repeat a named one, which then need "
            f"not match the named one's schema: make additionalProperties false or the same schema{at}"
        )
    if isinstance(schema.get("required"), list) and "allOf" not in schema:
        missing = [name for name in schema["required"] if name not in properties]
        if missing:
            raise SchemaProblem(
                f"required names {missing[0]!r}, which is not in properties: the converter would "
                f"not make it required{at}"
            )


ANNOTATIONS = frozenset(
    "title description default examples $comment $schema $id readOnly writeOnly deprecated "
    "contentMediaType contentEncoding".split()
)


def plain(schema: object) -> object:
    """The schema without its annotations (titles, descriptions, defaults...), which say nothing
    about the value: the converter takes `{"description": "..."}` for a schema it does not know,
    where it means any value."""
    if isinstance(schema, list):
        return [plain(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: plain(sub) for name, sub in value.items()}
        elif key in SCHEMA_KEYS or key in SCHEMA_LISTS:
            out[key] = plain(value)
        elif key == "pattern" and isinstance(value, str):
            out[key] = _grouped(value)
        else:
            out[key] = value  # enum, const, required...: data, kept as it is
    return out


def _grouped(pattern: str) -> str:
    """`^A|B$` as `^(A|B)$`: the converter reads a top-level `|` as splitting its quotes too,
    and lets out `A"` or `B` bare. The grouped pattern matches less than the original (every
    string it matches, the original matches), so the answer still validates."""
    if len(pattern) < 2 or pattern[0] != "^" or pattern[-1] != "$":
        return pattern
    inner, depth, i = pattern[1:-1], 0, 0
    while i < len(inner):
        c = inner[i]
        if c == "\\":
            i += 1
        elif c == "[":
            i = inner.find("]", i + 2) if "]" in inner[i + 2 :] else len(inner)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return f"^({inner})$"
        i += 1
    return pattern


def problem_error(flag: str, problem: SchemaProblem) -> QwenlocalError:
    return QwenlocalError(
        f"{flag}: {problem}",
        hint='a JSON schema file, or the schema as JSON; README\'s "Structured output" lists what it may use',
        code=ExitCode.USAGE,
    )


def structure_for(schema_arg: str | None, json_object: bool) -> Structure | None:
    """`run --schema FILE|JSON` / `--json-object`, checked (exit 2 with the reason)."""
    if schema_arg is None:
        return Structure(None) if json_object else None
    if json_object:
        raise QwenlocalError("--schema and --json-object are one or the other", code=ExitCode.USAGE)
    try:
        return check(read_schema(schema_arg))
    except SchemaProblem as problem:
        raise problem_error("--schema", problem) from None


class HeldAnswer:
    """Between the engine and the renderer of a structured answer: reasoning and notices pass at
    once, the answer is held until it is whole and valid, and only then written. An answer cut
    short or not valid is an error (exit 17) with its text on stderr, never on stdout."""

    def __init__(self, structure: Structure, renderer, term) -> None:
        self.structure, self.renderer, self.term = structure, renderer, term
        self.text = ""

    def handle(self, event) -> None:
        from .events import Done, TextDelta

        if isinstance(event, TextDelta):
            self.text += event.text
            return
        if isinstance(event, Done):
            answer = event.answer.strip()
            if event.finish != "stop":
                self._fail(answer, _cut(event), hint="raise --max-tokens (or --ctx), or ask for less")
            try:
                self.structure.validate(answer)
            except SchemaProblem as problem:
                self._fail(answer, f"{problem}", hint="run again, or simplify the schema")
            self.renderer.handle(TextDelta(answer))
        self.renderer.handle(event)

    def interrupted(self) -> None:
        self._partial(self.text.strip())
        self.renderer.interrupted()

    def _partial(self, text: str) -> None:
        if text:
            self.term.warn(f"the partial answer (not valid JSON for the schema): {text}")

    def _fail(self, text: str, message: str, hint: str = "") -> None:
        self._partial(text)
        raise QwenlocalError(message, hint=hint, code=ExitCode.STRUCTURED)


def _cut(done) -> str:
    if done.finish == "length":
        return (
            f"the answer was cut at {done.stats.generated_tokens} tokens (--max-tokens) before its JSON ended"
        )
    if done.finish == "context":
        return "the answer was cut by the full context before its JSON ended (raise --ctx)"
    return f"the answer ended early ({done.finish}) before its JSON ended"
