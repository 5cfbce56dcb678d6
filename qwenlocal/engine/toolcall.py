"""Qwen3.5's tool-call format, in one place: its markers, and the parser that reads calls out of a
reply, typed by the tools' JSON schemas (calltypes.py). The agent, its view, the engine's
reasoning rules and grammars, and the server all take the format from here.

The chat template asks for (Qwen3-Coder's XML format):

    <tool_call>
    <function=read_file>
    <parameter=path>
    src/app.py
    </parameter>
    </function>
    </tool_call>

The rules follow llama.cpp, vLLM and SGLang for this format, and go further where they would
silently lose work:

- A `string` parameter is the exact text (`{"a": 1}`, `42`, `true` stay text); `integer`, `number`,
  `boolean`, `object`, `array` and `null` are decoded as JSON, and a value that does not decode is
  an error for the model. A union with `string` takes the JSON value when it has one of the other
  types, else the text. Unknown tools and parameters keep the raw text (the loop refuses them).
- Exactly one newline is stripped at each end of a value (llama.cpp's rule: `#include\\n` survives).
- A value runs to the LAST `</parameter>` before the next parameter of this call or its
  `</function>`, so a value that shows the format's own tags is kept whole: tags nested in the
  value (`<tool_call>`, `<function=..>` and their closers) are counted and skipped, and only a
  parameter of the tool not yet given (or an unknown name right after a `</parameter>`) starts a
  new one. An embedded `<parameter=path>` can never replace a path already given; a value whose
  last `</parameter>` closes a known parameter opened inside it (the same parameter twice, or an
  embedded one before the real one) has two readings, and the model is asked again.
- A misspelled closer (`</parameter >`, `</paramter>`, `</fuction>`) is read as the closer, so it
  never ends up inside a written file, and a drifted one at the end of a value that was never
  closed (`</parameter1>`, `</parameter_function>`, `</parameter`) is dropped, as SGLang does; a
  missing `</function>` or `</tool_call>` is tolerated.
- A call without its `<tool_call>` opener is read (vLLM and SGLang do), several in a row too;
  Python literals (`True`, `None`, `{'a': 1}`) are read for typed parameters (calltypes.py); the JSON form
  (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`) older Qwen models use is read too.
- One unreadable block does not discard the calls beside it: `Parsed.error` reports it while the
  others run. The text around the calls (before, between, after) is kept as the reply's text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import NamedTuple

from .calltypes import ParamTypes, decode, param_types

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_OPEN = "<function="
MARKERS = (CALL_OPEN, FUNCTION_OPEN)  # where a call starts (its opener is sometimes left out)

FORMAT_REMINDER = (
    "Call a tool exactly like this, with nothing after it:\n"
    "<tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n</function>\n</tool_call>"
)

_NAME = r"[A-Za-z_][\w.\-]*"
_TAG = re.compile(rf"<(tool_call)\s*>|<(function|parameter)=({_NAME})\s*>|</\s*([A-Za-z_]{{4,12}})\s*>")
_CLOSERS = ("parameter", "function", "tool_call")
# A value's closer as grammar-less sampling lets it drift (SGLang strips these): `</parameter1>`,
# `</parameter_function>`, `</parameter` without its `>`; only at the end of an unclosed value.
_DRIFTED = re.compile(r"</parameter[\w\-]*>?\s*$")
# The tags a call's closers follow and precede (Value._glued).
_BEFORE = {"/function": ("/parameter", "function"), "/tool_call": ("/parameter", "/function")}
_AFTER = {"/function": ("/tool_call", "tool_call", "function"), "/tool_call": ("tool_call", "function")}


class FormatError(ValueError):
    """A tool call that could not be read; the message is written for the model."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.name, self.arguments], sort_keys=True)


class Parsed(NamedTuple):
    text: str  # everything outside the calls
    calls: list[ToolCall]
    error: FormatError | None = None  # the blocks that could not be read, if any


class Tag(NamedTuple):
    kind: str  # "tool_call", "function", "parameter", "/tool_call", "/function", "/parameter"
    name: str  # the function's or parameter's name for openers
    start: int
    end: int


def _closer(word: str) -> str | None:
    """The format's closer a closing tag stands for, near misses included (`</paramter>`)."""
    word = word.lower()
    for closer in _CLOSERS:
        if word == closer or SequenceMatcher(None, word, closer).ratio() >= 0.8:
            return closer
    return None


def scan(reply: str) -> list[Tag]:
    tags = []
    for m in _TAG.finditer(reply):
        if m[1]:
            tags.append(Tag("tool_call", "", m.start(), m.end()))
        elif m[2]:
            tags.append(Tag(m[2], m[3], m.start(), m.end()))
        elif closer := _closer(m[4]):
            tags.append(Tag("/" + closer, "", m.start(), m.end()))
    return tags


class _Bad(Exception):
    def __init__(self, why: str, end: int) -> None:
        super().__init__(why)
        self.end = end  # where reading goes on after the block


def parse(reply: str, tools: list[dict]) -> Parsed:
    """The reply's text and its calls; `tools` are the function schemas offered to the model."""
    types = param_types(tools)
    tags = scan(reply)
    texts, calls, errors = [], [], []
    pos = 0
    while True:
        starts = (k for k, t in enumerate(tags) if t.start >= pos and t.kind in ("tool_call", "function"))
        i = next(starts, None)
        if i is None:
            texts.append(reply[pos:])
            break
        texts.append(reply[pos : tags[i].start])
        try:
            call, pos = _Call(reply, tags, types).read(i)
            calls.append(call)
        except _Bad as bad:
            errors.append(str(bad))
            pos = max(bad.end, tags[i].end)
    text = "\n\n".join(t.strip() for t in texts if t.strip())
    return Parsed(text, calls, _error(errors, len(calls)) if errors else None)


def _error(errors: list[str], n_good: int) -> FormatError:
    what = "; ".join(errors)
    ran = f" The other {n_good} call(s) in the reply were read and run." if n_good else ""
    return FormatError(f"{what}.{ran} {FORMAT_REMINDER}")


class _Call:
    """Reads one call starting at a `<tool_call>` or `<function=` tag."""

    def __init__(self, reply: str, tags: list[Tag], types: dict[str, ParamTypes]) -> None:
        self.reply, self.tags, self.types = reply, tags, types

    def _tag_at(self, pos: int) -> int | None:
        """The index of the tag that comes next after `pos` with only whitespace before it."""
        for k, tag in enumerate(self.tags):
            if tag.start >= pos:
                return k if not self.reply[pos : tag.start].strip() else None
        return None

    def _block_end(self, i: int) -> int:
        """Where an unreadable block ends: its `</tool_call>`, the next call, or the reply's end."""
        for tag in self.tags[i + 1 :]:
            if tag.kind == "/tool_call":
                return tag.end
            if tag.kind == "tool_call":
                return tag.start
        return len(self.reply)

    def read(self, i: int) -> tuple[ToolCall, int]:
        tag = self.tags[i]
        if tag.kind == "tool_call":
            rest = self.reply[tag.end :].lstrip()
            if rest.startswith("{"):
                return self._json(tag.end + self.reply[tag.end :].index("{"), i)
            k = self._tag_at(tag.end)
            if k is None or self.tags[k].kind != "function":
                raise _Bad("a <tool_call> must contain <function=NAME>...</function>", self._block_end(i))
            i = k
        return self._function(i)

    def _json(self, start: int, i: int) -> tuple[ToolCall, int]:
        try:
            data, end = json.JSONDecoder().raw_decode(self.reply, start)
            args = data.get("arguments", data.get("parameters", {}))
            if isinstance(args, str):
                args = json.loads(args)
            name, args = str(data["name"]), dict(args)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _Bad("the JSON in a tool call is not valid", self._block_end(i)) from None
        known = self.types.get(name) or {}
        for param, value in args.items():  # a file's JSON given as an object is still its text
            if known.get(param) == {"string"} and not isinstance(value, str):
                args[param] = json.dumps(value, ensure_ascii=False, indent=2)
        return ToolCall(name, args), self._after(end, "/tool_call")

    def _after(self, pos: int, kind: str) -> int:
        """`pos`, or past the tag of this kind that comes next after whitespace."""
        k = self._tag_at(pos)
        return self.tags[k].end if k is not None and self.tags[k].kind == kind else pos

    def _function(self, i: int) -> tuple[ToolCall, int]:
        name = self.tags[i].name
        known = self.types.get(name)
        args: dict = {}
        pos = self.tags[i].end
        while True:
            k = self._tag_at(pos)
            kind = self.tags[k].kind if k is not None else None
            if kind in ("/function", "/tool_call"):
                pos = self.tags[k].end
                break
            if kind != "parameter":
                if not self.reply[pos:].strip():  # cut off after a value: the call is complete
                    pos = len(self.reply)
                    break
                raise _Bad(f"{name}: expected <parameter=ARG> or </function>", self._block_end(i))
            param = self.tags[k].name
            if param in args:
                raise _Bad(f"{name}: the parameter {param} is given twice", self._block_end(i))
            try:
                raw, pos = Value(self.reply, self.tags, known, set(args) | {param}).read(k)
                args[param] = decode(raw, known.get(param) if known else None)
            except ValueError as error:
                raise _Bad(f"{name}: {param} {error}", self._block_end(i)) from None
        return ToolCall(name, args), (self._after(pos, "/tool_call") if kind != "/tool_call" else pos)


class Value:
    """The extent of one parameter's value: up to the last `</parameter>` before the next
    parameter of this call, its `</function>` or `</tool_call>`; tags nested in the value skipped.

    A `</function>` or `</tool_call>` is structure only where it stands, with nothing but
    whitespace between, next to a tag the format puts there (or the reply's end):
    `CLOSE = "</tool_call>"` in a Python file being written is text. A `<tool_call>` opens a
    nested call only right before a `<function=`; when the nesting never closes (code with a
    lone `<function=x>`), the value is read again without it."""

    def __init__(self, reply: str, tags: list[Tag], known: ParamTypes | None, given: set[str]) -> None:
        self.reply, self.tags, self.known, self.given = reply, tags, known, given

    def _blank(self, start: int, end: int) -> bool:
        return not self.reply[start:end].strip()

    def _glued(self, k: int) -> bool:
        """A closer that stands where the structure puts it: right after the tag that comes before
        it in a call, or right before what comes after a call (or the reply's end)."""
        tag, tags = self.tags[k], self.tags
        before = tags[k - 1] if k > 0 else None
        after = tags[k + 1] if k + 1 < len(tags) else None
        if before and before.kind in _BEFORE[tag.kind] and self._blank(before.end, tag.start):
            return True
        if after is None:
            return self._blank(tag.end, len(self.reply))
        return after.kind in _AFTER[tag.kind] and self._blank(tag.end, after.start)

    def _opens(self, k: int, nested: bool) -> bool:
        tag = self.tags[k]
        if not nested or tag.kind not in ("tool_call", "function"):
            return False
        following = self.tags[k + 1] if k + 1 < len(self.tags) else None
        return tag.kind == "function" or (
            following is not None and following.kind == "function" and self._blank(tag.end, following.start)
        )

    def _starts_parameter(self, tag: Tag, previous: Tag | None) -> bool:
        if self.known is not None and tag.name in self.known:
            return tag.name not in self.given
        # an unknown name is a parameter only where one ends just before it
        return previous is not None and previous.kind == "/parameter" and self._blank(previous.end, tag.start)

    def read(self, k: int) -> tuple[str, int]:
        """The raw value (one newline stripped at each end) and where reading goes on."""
        found = self._scan(k, nested=True)
        if found[1] is None or found[0] == len(self.reply):  # no `</parameter>` or no end outside
            flat = self._scan(k, nested=False)  # the nesting: a lone tag in code, say
            found = flat if flat[1] is not None else found
        boundary, last_close, inside = found
        if inside is not None:
            raise ValueError(f"<parameter={inside}> is given twice (or is inside another value)")
        end, goes_on = (last_close.start, last_close.end) if last_close else (boundary, boundary)
        value = self.reply[self.tags[k].end : end]
        if last_close is None:  # never closed: a closer that drifted (`</parameter1>`) is no text
            value = _DRIFTED.sub("", value)
        value = value[1:] if value.startswith("\n") else value
        return (value[:-1] if value.endswith("\n") else value), goes_on

    def _scan(self, k: int, nested: bool) -> tuple[int, Tag | None, str | None]:
        """(the boundary, the last `</parameter>` before it, a known parameter opened inside)."""
        depth, last_close, previous, inside, closing = 0, None, None, None, None
        for j in range(k + 1, len(self.tags)):
            tag = self.tags[j]
            if self._opens(j, nested):
                depth += 1
            elif depth and tag.kind in ("/tool_call", "/function"):
                depth -= 1
            elif depth:
                continue
            elif tag.kind in ("/tool_call", "/function") and self._glued(j):
                return tag.start, last_close, closing or inside
            elif tag.kind == "parameter" and self._starts_parameter(tag, previous):
                return tag.start, last_close, closing or inside
            elif tag.kind == "parameter" and self.known is not None and tag.name in self.known:
                inside = tag.name  # a known parameter's tag inside the value
            elif tag.kind == "/parameter":
                last_close, closing, inside = tag, inside, None
            if not depth:
                previous = tag
        return len(self.reply), last_close, closing or inside
