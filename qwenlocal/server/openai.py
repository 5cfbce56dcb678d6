"""An OpenAI chat-completions request read into what the engine takes: messages for the chat
template, tools, GenerateOptions. Anything malformed is an ApiError (OpenAI's error shape) that
names the parameter, never a traceback or a silent default."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..engine import GenerateOptions
from ..errors import QwenlocalError

ROLES = {"system", "user", "assistant", "tool", "developer"}
INT32 = 2**31 - 1  # llama.cpp keeps token counts and top_k in 32-bit ints
INT64 = 2**63  # a seed is any 64-bit integer, as vLLM's is (the engine keeps its low 32 bits)


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    options: GenerateOptions
    tools: list[dict] | None
    stream: bool
    include_usage: bool
    raw_text: bool = False  # qwenlocal's own (`chat --server`'s agent): tool calls left in the text


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param)


def parse_request(body: object, defaults: Callable[[bool | None], GenerateOptions]) -> ChatRequest:
    """`defaults(think)`: the loaded model's options with thinking on, off, or (None) its default."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    if body.get("n", 1) != 1:
        raise bad("only n=1 is supported: one answer per request", "n")
    options = defaults(thinking(body))
    limits = [_number(body, name, int, 1, INT32) for name in ("max_completion_tokens", "max_tokens")]
    options = replace(
        options,
        sampling=sampling(body, options.sampling),
        max_tokens=limits[0] or limits[1],
        seed=_number(body, "seed", int, -INT64, INT64 - 1),
        stop=stops(body.get("stop")),
    )
    if options.max_tokens is None:  # keep the server's own --max-tokens, if any
        options = replace(options, max_tokens=defaults(options.think).max_tokens)
    options = replace(options, ignore_eos=_flag(body, "ignore_eos"))  # llama-server's; benchmarks
    budget = _number(body, "think_budget", int, 0, INT32)  # qwenlocal's own: reasoning tokens (0: none)
    if budget is not None:
        options = replace(options, think_budget=budget or None)
    stream = _flag(body, "stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise bad("stream_options must be an object", "stream_options")
    include_usage = bool(stream_options.get("include_usage"))
    raw = _flag(body, "raw_text")
    offered = tools(body)
    options = replace(options, grammar=answer_grammar(body, offered))
    return ChatRequest(messages(body.get("messages")), options, offered, stream, include_usage, raw)


def thinking(body: dict) -> bool | None:
    """Per request: `chat_template_kwargs.enable_thinking` (vLLM, llama-server), or
    `reasoning_effort` ("none" turns it off, any other effort on); None: the model's default."""
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise bad("chat_template_kwargs must be an object", "chat_template_kwargs")
    if "enable_thinking" in kwargs:
        if not isinstance(kwargs["enable_thinking"], bool):
            raise bad("enable_thinking must be true or false", "chat_template_kwargs.enable_thinking")
        return kwargs["enable_thinking"]
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in ("none", "minimal", "low", "medium", "high"):
        raise bad("reasoning_effort must be none, minimal, low, medium or high", "reasoning_effort")
    return effort != "none"


def sampling(body: dict, base):
    """The model card's sampling with what the request sets."""
    changes = {
        "temperature": _number(body, "temperature", float, 0.0, 2.0),
        "top_p": _number(body, "top_p", float, 0.0, 1.0),
        "top_k": _number(body, "top_k", int, 0, INT32),
        "min_p": _number(body, "min_p", float, 0.0, 1.0),
        "presence_penalty": _number(body, "presence_penalty", float, -2.0, 2.0),
        "frequency_penalty": _number(body, "frequency_penalty", float, -2.0, 2.0),
        "repeat_penalty": _number(body, "repeat_penalty", float, 0.0, above=True),
    }
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def _number(
    body: dict,
    name: str,
    kind: type,
    low: float | None = None,
    high: float | None = None,
    above: bool = False,
):
    """A numeric field, or None when unset: a finite number of its kind within [low, high] (above
    `low` with `above`), as the CLI's flags are bounded; anything else is a 400 naming the field."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"{name} must be a number", name)
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN and Infinity, as Python reads it
        raise bad(f"{name} must be a finite number, not {value}", name)
    if kind is int and value != int(value):
        raise bad(f"{name} must be an integer", name)
    if (low is not None and (value <= low if above else value < low)) or (high is not None and value > high):
        least = f"above {low}" if above else f"at least {low}"
        span = least if high is None else f"between {low} and {high}"
        shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:12] + "..."
        raise bad(f"{name} must be {span}, not {shown}", name)
    return kind(value)


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is not None and not isinstance(value, bool):
        raise bad(f"{name} must be true or false", name)
    return bool(value)


def stops(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value) or len(value) > 16:
        raise bad("stop must be a string or a list of at most 16 strings", "stop")
    return tuple(s for s in value if s)


def messages(raw: object) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad("messages must be a non-empty array", "messages")
    return [message(m, i) for i, m in enumerate(raw)]


def message(raw: object, i: int) -> dict:
    where = f"messages[{i}]"
    if not isinstance(raw, dict) or raw.get("role") not in ROLES:
        raise bad(f"{where} needs a role: one of {', '.join(sorted(ROLES))}", f"{where}.role")
    role = "system" if raw["role"] == "developer" else raw["role"]
    out = {"role": role, "content": content(raw.get("content"), where)}
    if role == "assistant":
        if isinstance(raw.get("reasoning_content"), str):
            out["reasoning_content"] = raw["reasoning_content"]
        if raw.get("tool_calls"):
            if not isinstance(raw["tool_calls"], list):
                raise bad(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
            out["tool_calls"] = [call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(raw["tool_calls"])]
    if role == "tool" and isinstance(raw.get("tool_call_id"), str):
        out["tool_call_id"] = raw["tool_call_id"]
    return out


def content(value: object, where: str) -> str | list[dict]:
    """A message's content: a string, the text parts of a list joined, or (with images) the
    chat template's parts."""
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise bad(f"{where}.content must be a string or an array of parts", f"{where}.content")
    texts, pictures = [], []
    for k, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            pictures.append(image_part(part, f"{where}.content[{k}]"))
        else:
            raise bad(f"{where}.content[{k}] must be a text or image_url part", f"{where}.content[{k}]")
    from ..images import with_images

    return with_images("\n".join(texts), pictures)


def image_part(part: dict, where: str):
    """An `image_url` part (a base64 data: URI) as an Image (see `image`)."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise bad(f"{where}.image_url.url must be a data: URI with base64 data (no fetching)", where)
    return image(url.split(";base64,", 1)[1], f"{where}.image_url.url", where)


def image(encoded: str, field: str, where: str):
    """Base64 image data as an Image, checked as images are everywhere (qwenlocal.images.load: a
    bad one is a 400 with the reason). `field` names the data in the error."""
    import base64
    import binascii

    from ..images import load

    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{field} holds invalid base64", where) from None
    try:
        return load(data, where)
    except QwenlocalError as error:
        raise bad(f"{error.message} ({error.hint})" if error.hint else error.message, where) from None


def call(raw: object, where: str) -> dict:
    """An assistant's earlier tool call, with its JSON-text arguments as the object the template
    writes out parameter by parameter."""
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad(f"{where} needs function.name", where)
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise bad(
                f"{where}.function.arguments is not valid JSON", f"{where}.function.arguments"
            ) from None
    if not isinstance(arguments, dict):
        raise bad(f"{where}.function.arguments must be a JSON object", f"{where}.function.arguments")
    return {"type": "function", "function": {"name": function["name"], "arguments": arguments}}


def tools(body: dict) -> list[dict] | None:
    """The function tools offered; `tool_choice: "none"` offers none. Each function's `parameters`
    is a JSON schema object whose `properties` are schema objects: the chat template and the call
    parser read them so."""
    raw = body.get("tools")
    if not raw or body.get("tool_choice") == "none":
        return None
    if not isinstance(raw, list):
        raise bad("tools must be an array", "tools")
    for k, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise bad(f"tools[{k}] must be a function tool", f"tools[{k}]")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise bad(f"tools[{k}].function needs a name", f"tools[{k}].function.name")
        schema(function.get("parameters"), f"tools[{k}].function.parameters")
    return raw


def schema(parameters: object, where: str) -> None:
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise bad(f"{where} must be a JSON schema object", where)
    properties = parameters.get("properties")
    if properties is None:
        return
    if not isinstance(properties, dict):
        raise bad(f"{where}.properties must be an object", f"{where}.properties")
    for name, value in properties.items():
        if not isinstance(value, dict):
            raise bad(f"{where}.properties.{name} must be a JSON schema object", f"{where}.properties.{name}")


def answer_grammar(body: dict, offered: list[dict] | None):
    """What the answer must be, as the grammar that makes it so: one tool call (`tool_choice`
    "required", or a named function), JSON (`response_format` json_object or json_schema), a call
    or that JSON (both, with tools offered and `tool_choice` "auto"), or anything (None)."""
    from ..engine.grammar import GrammarError, call_grammar
    from ..structured import Structure, plain

    forced = tool_choice(body, offered)
    schema = response_format(body.get("response_format"))
    # the parameters without their titles and descriptions, which the converter can trip on
    functions = [
        {**t["function"], "parameters": plain(t["function"].get("parameters") or {})} for t in offered or ()
    ]
    try:
        if forced is not None:
            return call_grammar(functions, forced or None)
        if schema is False:
            return None
        if offered:
            return call_grammar(functions, None, None if schema is None else plain(schema))
        return Structure(schema).grammar()
    except GrammarError as error:  # a tool's parameters the converter cannot use
        raise bad(f"tools: {error}", "tools") from None
    except ValueError as error:  # structured.SchemaProblem
        raise bad(f"response_format.json_schema.schema: {error}", "response_format") from None


def tool_choice(body: dict, offered: list[dict] | None) -> str | None:
    """The function the reply must call: its name, "" for any of the tools, None when the model
    may answer instead ("auto", "none", unset)."""
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return None
    if choice == "required":
        name = ""
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        name = choice["function"]["name"]
    else:
        raise bad(
            'tool_choice must be "none", "auto", "required" or {"type": "function", "function": '
            '{"name": ...}}',
            "tool_choice",
        )
    names = [t["function"]["name"] for t in offered or ()]
    if not names:
        raise bad(f"tool_choice {choice if isinstance(choice, str) else name!r} needs tools", "tool_choice")
    if name and name not in names:
        raise bad(f"tool_choice names {name!r}, which is not among the tools offered", "tool_choice")
    return name


def response_format(raw: object) -> dict | None | bool:
    """The answer's JSON schema: a schema checked as `run --schema` checks it, None for any JSON
    object ("json_object"), False for free text ("text", or unset)."""
    if raw is None:
        return False
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return False
    if kind == "json_object":
        return None
    if kind != "json_schema":
        raise bad('response_format.type must be "text", "json_object" or "json_schema"', "response_format")
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise bad("response_format.json_schema needs a name and a schema", "response_format")
    if "strict" in spec and not isinstance(spec["strict"], bool | None):
        raise bad("response_format.json_schema.strict must be true or false", "response_format")
    from ..structured import SchemaProblem, check

    try:
        return check(spec.get("schema")).schema
    except SchemaProblem as problem:
        raise bad(f"response_format.json_schema.schema: {problem}", "response_format") from None
