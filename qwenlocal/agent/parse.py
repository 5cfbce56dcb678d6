"""Parse Qwen3.5's tool calls out of a reply.

The chat template asks for (Qwen3-Coder's XML format):

    <tool_call>
    <function=read_file>
    <parameter=path>
    src/app.py
    </parameter>
    </function>
    </tool_call>

Small models drift, so the parser is tolerant: text before the call, several calls in one reply,
a missing closing `</tool_call>` at the end of the reply, JSON-looking values, and the JSON form
(`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`) older Qwen models use. What it cannot
read raises FormatError, whose message goes back to the model so it can correct itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_FUNCTION = re.compile(r"<function=([^>\s]+)\s*>(.*?)(?:</function>|$)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\s]+)\s*>\n?(.*?)\n?(?:</parameter>|(?=<parameter=)|$)", re.S)

FORMAT_REMINDER = (
    "Call a tool exactly like this, with nothing after it:\n"
    "<tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n</function>\n</tool_call>"
)


class FormatError(ValueError):
    """A tool call that could not be read; the message is written for the model."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.name, self.arguments], sort_keys=True)


def _value(text: str):
    """Parameter values are raw text; numbers, booleans, lists and objects may come as JSON.
    (Decoded whatever the tool's schema says; each parameter's JSON type is in the tool table,
    `tools.Tool.types()`, for a parser that reads values by type.)"""
    stripped = text.strip()
    if (
        stripped[:1] in "[{"
        or stripped in ("true", "false", "null")
        or re.fullmatch(r"-?\d+(\.\d+)?", stripped)
    ):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _one(body: str) -> ToolCall:
    body = body.strip()
    if body.startswith("{"):  # the JSON form
        try:
            data = json.loads(body)
            args = data.get("arguments", data.get("parameters", {}))
            if isinstance(args, str):
                args = json.loads(args)
            return ToolCall(str(data["name"]), dict(args))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FormatError(f"the JSON in this tool call is not valid. {FORMAT_REMINDER}") from None
    match = _FUNCTION.search(body)
    if not match:
        raise FormatError(f"a <tool_call> must contain <function=NAME>...</function>. {FORMAT_REMINDER}")
    arguments = {name: _value(value) for name, value in _PARAMETER.findall(match[2])}
    return ToolCall(match[1], arguments)


def parse(reply: str) -> tuple[str, list[ToolCall]]:
    """The text before the first call, and the calls (empty when the reply is a final answer)."""
    start = reply.find(OPEN)
    if start < 0:
        if "<function=" in reply:  # a call without its <tool_call> wrapper
            raise FormatError(f"the call is not inside <tool_call> ... </tool_call>. {FORMAT_REMINDER}")
        return reply.strip(), []
    text = reply[:start].strip()
    calls = []
    rest = reply[start:]
    while rest.startswith(OPEN):
        end = rest.find(CLOSE)
        body = rest[len(OPEN) : end if end >= 0 else len(rest)]
        calls.append(_one(body))
        rest = rest[end + len(CLOSE) :].lstrip() if end >= 0 else ""
    return text, calls
