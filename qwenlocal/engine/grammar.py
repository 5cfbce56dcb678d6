"""Grammars for structured answers, written by llama.cpp's own JSON-schema converter (the copy
llama-cpp-python ships, `llama_cpp.llama_grammar`), and checked by llama.cpp's own grammar parser.

A `Grammar` holds the rules and the name of the rule the answer must match. The sampler (sampler.py)
starts it where the answer starts: with thinking on, lazily, at `</think>` (the reasoning stays
free); without, at the first token. Two kinds:

- `json_grammar(schema)`: the answer is JSON valid for the schema (None: any JSON object).
- `call_grammar(tools, name)`: the answer is one tool call in Qwen's XML call format, of the named
  function (None: any of them), each parameter's value written as the agent's parser reads it
  (calltypes.py): plain text for a string, JSON of its schema for the other types.

Four slips of the converter are mended (found by tests/test_schema.py): its `char` and its regex
`.` allow raw control characters in a JSON string (and `.` even a bare `"` or `\\`), which JSON
forbids, so they get JSON's own set; its literals leave a backslash unescaped; and after an
optional property it asks for `additionalProperties` without the comma before them (and
requires one), so `{"a": 1 "b": 2}` was the only way to give `a`.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass

from .toolcall import CALL_OPEN

START = "qwenlocal-answer"  # the start rule this module adds; the converter never makes this name
END_THINK = "</think>"
WS_AFTER_THINK = r"[ \t\n]{0,4}"  # the template's "\n\n" between </think> and the answer
# JSON strings: no raw control character, quote or backslash (escapes are separate alternatives)
_CHAR = r'char ::= [^"\\] | '
_JSON_CHAR = r'char ::= [^"\\\x00-\x1F\x7F] | '
_DOT = "dot ::= [^\\x0A\\x0D]"
_JSON_DOT = 'dot ::= [^"\\\\\\x00-\\x1F\\x7F]'
# an optional property's "rest" that is only the additional properties: the converter leaves out
# the comma before them, and makes them required
_REST = re.compile(r"^([\w-]*-rest) ::= ([\w-]*additional-kvs)$")


class GrammarError(ValueError):
    """A schema the converter cannot turn into a grammar (or into one llama.cpp can parse)."""


@dataclass(frozen=True)
class Grammar:
    rules: str  # GBNF
    start: str  # the rule the answer matches
    triggers: tuple[str, ...] = (END_THINK,)  # what starts it when thinking is on
    schema: str | None = None  # the JSON schema, as JSON text ("" : any object); None for a call

    def text(self, think: bool) -> str:
        """The grammar with its start rule: with thinking on, the answer comes after `</think>`
        (or, for a call, may begin at the `<tool_call>` a small model writes inside its reasoning)."""
        if not think:
            return f"{self.rules}\n{START} ::= {self.start}\n"
        return f'{self.rules}\n{START} ::= ("{END_THINK}" {WS_AFTER_THINK})? {self.start}\n'


def _converter():
    from .llamacpp import llama_lib

    llama_lib()  # llama.cpp's log captured before anything of it runs
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter._format_literal = _format_literal  # its own leaves a backslash unescaped
    return converter


def _format_literal(literal: str) -> str:
    """A GBNF literal: the converter's escapes, and the backslash's, which it forgets (a `const`
    with a backslash made a grammar llama.cpp could not parse)."""
    escapes = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", '"': '\\"'}
    return '"' + re.sub(r'[\\\r\n"]', lambda m: escapes[m.group(0)], literal) + '"'


def _tightened(rules: str) -> str:
    lines = []
    for line in rules.splitlines():
        if line.startswith(_CHAR):
            line = _JSON_CHAR + line[len(_CHAR) :]
        elif line == _DOT:
            line = _JSON_DOT
        elif _REST.match(line):  # after an optional property, more are optional, after a comma
            line = _REST.sub(r'\1 ::= ( "," space \2 )?', line)
        lines.append(line)
    return "\n".join(lines)


def _convert(work) -> str:
    """Run the converter; its failures (asserts, KeyErrors on bad refs...) become GrammarError."""
    try:
        return work()
    except RecursionError:
        raise GrammarError("the schema nests too deeply (or refers to itself without end)") from None
    except (AssertionError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GrammarError(f"llama.cpp's converter cannot use it: {reason}") from None


def json_grammar(schema: dict | None) -> Grammar:
    """The grammar of JSON valid for `schema`; None: any JSON object."""
    converter = _converter()
    root = _json_rule(converter, schema)
    grammar = Grammar(_tightened(converter.format_grammar()), root, (END_THINK,), _schema_text(schema))
    check(grammar)
    return grammar


def call_grammar(tools: list[dict], name: str | None = None, schema: dict | None | bool = False) -> Grammar:
    """One call of the function `name` (None: of any of `tools`), in Qwen's XML format; with a
    `schema` (None: any JSON object; False: none), that JSON instead of a call is allowed too."""
    converter = _converter()
    functions = [t.get("function", t) for t in tools]
    if name is not None:
        functions = [f for f in functions if f.get("name") == name]
    if not functions:
        raise GrammarError(f"no tool named {name!r} is offered" if name else "no tools are offered")
    alternatives = _convert(lambda: [_function_rule(converter, f, k) for k, f in enumerate(functions)])
    if schema is not False:
        alternatives.append(_json_rule(converter, schema))
    start = converter._add_rule("qwenlocal-call", " | ".join(alternatives))
    text = None if schema is False else _schema_text(schema)
    grammar = Grammar(_tightened(converter.format_grammar()), start, (END_THINK, CALL_OPEN), text)
    check(grammar)
    return grammar


def _schema_text(schema: dict | None) -> str:
    return "" if schema is None else json.dumps(schema)


def _json_rule(converter, schema: dict | None) -> str:
    target = {"type": "object"} if schema is None else schema

    def work() -> str:
        resolved = converter.resolve_refs(json.loads(json.dumps(target)), "input")
        return converter.visit(resolved, "")

    return _convert(work)


def _literal(converter, text: str) -> str:
    return converter._format_literal(text)


def _function_rule(converter, function: dict, k: int) -> str:
    """`<tool_call>\\n<function=NAME>\\n` its parameters `</function>\\n</tool_call>`: the required
    ones in the schema's order, then each optional one or not."""
    name = function["name"]
    parameters = converter.resolve_refs(json.loads(json.dumps(function.get("parameters") or {})), name)
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or ())
    parts = []
    for i, (param, schema) in enumerate(properties.items()):
        value = _value_rule(converter, schema if isinstance(schema, dict) else {}, f"qwenlocal-f{k}-p{i}")
        text = (
            _literal(converter, f"<parameter={param}>\n")
            + f" {value} "
            + _literal(converter, "\n</parameter>\n")
        )
        rule = converter._add_rule(f"qwenlocal-f{k}-p{i}-kv", text)
        parts.append(rule if param in required else f"{rule}?")
    head = _literal(converter, f"{CALL_OPEN}\n<function={name}>\n")
    tail = _literal(converter, "</function>\n</tool_call>")
    return converter._add_rule(f"qwenlocal-f{k}", " ".join([head, *parts, tail]))


def _value_rule(converter, schema: dict, rule: str) -> str:
    """A parameter's value as the parser reads it: text for a string (one of its `enum` or its
    `const` when it has them), else the converter's JSON for the schema."""
    from .calltypes import types_of

    types = types_of(converter._refs.get(schema.get("$ref"), schema) if "$ref" in schema else schema)
    if not types or "string" in types:
        choices = schema.get("enum") if isinstance(schema.get("enum"), list) else None
        if "const" in schema:
            choices = [schema["const"]]
        if choices and all(isinstance(c, str) for c in choices):
            return converter._add_rule(rule, " | ".join(_literal(converter, c) for c in choices))
        # any text without a tag of the call format in it (`</...`, `<tool_call>`, `<function=`,
        # `<parameter=`), so that the parser reads it back whole
        return converter._add_rule(rule, r'( [^<] | "<" [^/tfp<] )*')
    return converter.visit(schema, rule)


def check(grammar: Grammar) -> None:
    """Have llama.cpp's own parser read the grammar (both starts): a converter's output it
    rejects is a GrammarError here, not a failure halfway through an answer. Its parser writes
    its complaint (and the whole grammar) straight to stderr: that is caught for the reason."""
    from .llamacpp import llama_lib

    lib = llama_lib()
    for think in (False, True):
        with _stderr_caught() as said:
            sampler = lib.llama_sampler_init_grammar(None, grammar.text(think).encode(), START.encode())
        if not sampler:
            lines = [line.strip() for line in said() if "error" in line]
            reason = re.sub(r"^parse: ", "", lines[0]) if lines else "it does not parse"
            raise GrammarError(f"llama.cpp cannot parse the grammar made from it: {reason}")
        lib.llama_sampler_free(sampler)


@contextmanager
def _stderr_caught():
    """File descriptor 2 into a temporary file for the block; `said()` gives its lines after."""
    import os
    import tempfile

    lines: list[str] = []
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        try:
            os.dup2(caught.fileno(), 2)
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines += caught.read().decode("utf-8", "replace").splitlines()
