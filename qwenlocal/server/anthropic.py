"""An Anthropic Messages request (POST /v1/messages, /v1/messages/count_tokens) read into what the
engine takes: the same messages, tools and GenerateOptions that openai.py makes of a chat
completion, so that the chat template, the call parser, the tool grammar and the kept states work
alike for both APIs. Tools and `tool_choice` are turned into their OpenAI shape and checked by
openai.py's own code. Anything malformed is an ApiError naming the field; anthropic_answer.py
answers it in Anthropic's shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..engine import GenerateOptions
from .openai import INT32, _number, answer_grammar, bad, sampling, schema
from .openai import image as decoded

SIGNATURE = "qwenlocal"  # a thinking block's `signature`: clients expect one; nothing checks it


@dataclass(frozen=True)
class MessagesRequest:
    messages: list[dict]
    options: GenerateOptions
    tools: list[dict] | None  # as OpenAI's function tools, the shape the chat template reads
    stream: bool


def parse_request(
    body: object, defaults: Callable[[bool | None], GenerateOptions], counting: bool = False
) -> MessagesRequest:
    """`defaults(think)`: the loaded model's options; `counting`: for count_tokens, where
    `max_tokens` is not needed."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    think, budget = thinking(body.get("thinking"))
    options = defaults(think)
    max_tokens = _number(body, "max_tokens", int, 1, INT32)
    if max_tokens is None and not counting:
        raise bad("max_tokens is required: the most tokens to generate, thinking included", "max_tokens")
    chosen = {name: body.get(name) for name in ("temperature", "top_p", "top_k")}
    options = replace(
        options,
        sampling=sampling(chosen, options.sampling),
        max_tokens=max_tokens,
        stop=stop_sequences(body.get("stop_sequences")),
        think_budget=budget if budget is not None else options.think_budget,
    )
    offered, grammar = tools(body.get("tools"), body.get("tool_choice"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad("stream must be true or false", "stream")
    options = replace(options, grammar=grammar)
    return MessagesRequest(conversation(body), options, offered, bool(stream))


def thinking(raw: object) -> tuple[bool, int | None]:
    """Thinking on or off, and its budget: on with `{"type": "enabled", "budget_tokens": N}`
    (N reasoning tokens at most) or `"adaptive"` (the server's budget, if any); off otherwise, as
    Anthropic's models do not think unless asked."""
    if raw is None:
        return False, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "enabled":
        budget = _number(raw, "budget_tokens", int, 1, INT32)
        if budget is None:
            raise bad('thinking.budget_tokens is required with "type": "enabled"', "thinking.budget_tokens")
        return True, budget
    if kind in ("adaptive", "disabled"):
        return kind == "adaptive", None
    raise bad('thinking.type must be "enabled" (with budget_tokens), "adaptive" or "disabled"', "thinking")


def stop_sequences(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value) or len(value) > 16:
        raise bad("stop_sequences must be a list of at most 16 strings", "stop_sequences")
    return tuple(s for s in value if s)


def tools(raw: object, choice: object) -> tuple[list[dict] | None, object]:
    """The tools offered (None with `tool_choice` none) as OpenAI function tools, and the grammar
    that `tool_choice` any or tool (a call must come) asks for: openai.answer_grammar's."""
    if raw is not None and not isinstance(raw, list):
        raise bad("tools must be an array", "tools")
    functions = [function(tool, f"tools[{k}]") for k, tool in enumerate(raw or ())]
    shaped = {"tools": functions, "tool_choice": tool_choice(choice, bool(functions))}
    offered = functions if functions and shaped["tool_choice"] != "none" else None
    return offered, answer_grammar(shaped, offered)


def function(tool: object, where: str) -> dict:
    """An Anthropic tool, {name, description, input_schema}, as an OpenAI function tool."""
    if not isinstance(tool, dict):
        raise bad(f"{where} must be an object: {{name, description, input_schema}}", where)
    if tool.get("type", "custom") not in (None, "custom"):
        raise bad(
            f"{where} is a {tool['type']!r} tool, which Anthropic runs on its own servers: only tools "
            "that the client runs ({name, description, input_schema}) are supported",
            f"{where}.type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"{where} needs a name", f"{where}.name")
    parameters = tool.get("input_schema")
    schema(parameters, f"{where}.input_schema")
    out: dict = {"name": name}
    if isinstance(tool.get("description"), str):
        out["description"] = tool["description"]
    out["parameters"] = parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": out}


def tool_choice(raw: object, have_tools: bool) -> str | dict | None:
    """Anthropic's `tool_choice` as OpenAI's: auto, any (required), tool (that function), none."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if raw is None or kind == "auto":
        return None
    if kind == "none":
        return "none"
    if kind in ("any", "tool") and not have_tools:
        raise bad(f'tool_choice "{kind}" needs tools', "tool_choice")
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise bad(
        'tool_choice must be {"type": "auto"}, {"type": "any"}, {"type": "tool", "name": ...} '
        'or {"type": "none"}',
        "tool_choice",
    )


def conversation(body: dict) -> list[dict]:
    """`system` and `messages` as the chat template's messages. A user turn's tool_result blocks
    become role "tool" messages (before its own text, as Anthropic has them first)."""
    out = []
    system = system_text(body.get("system"))
    if system:
        out.append({"role": "system", "content": system})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad("messages must be a non-empty array", "messages")
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            hint = " (the system prompt goes in the top-level `system`)" if role == "system" else ""
            raise bad(f"{where}.role must be user or assistant{hint}", f"{where}.role")
        blocks = message.get("content")
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        if not isinstance(blocks, list):
            raise bad(f"{where}.content must be a string or an array of blocks", f"{where}.content")
        out += user(blocks, where) if role == "user" else [assistant(blocks, where)]
    if raw[-1].get("role") != "user":
        raise bad(
            "the last message must be the user's: continuing a given start of the assistant's answer "
            "(prefill) is not supported",
            f"messages[{len(raw) - 1}]",
        )
    return out


def system_text(value: object) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in value
    ):
        return "\n".join(b["text"] for b in value)
    raise bad("system must be a string or an array of text blocks", "system")


def user(blocks: list, where: str) -> list[dict]:
    results, texts, pictures = [], [], []
    for k, block in enumerate(blocks):
        at = f"{where}.content[{k}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            results.append(tool_result(block, at))
        else:
            part(block, at, texts, pictures, "a text, image or tool_result block")
    if texts or pictures or not results:
        from ..images import with_images

        return [*results, {"role": "user", "content": with_images("\n".join(texts), pictures)}]
    return results


def tool_result(block: dict, where: str) -> dict:
    """A tool's result as our role "tool" message; `is_error` is said in its text."""
    texts, pictures = [], []
    content = block.get("content")
    if content is None or isinstance(content, str):
        texts.append(content or "")
    elif isinstance(content, list):
        for k, item in enumerate(content):
            part(item, f"{where}.content[{k}]", texts, pictures, "a text or image block")
    else:
        raise bad(f"{where}.content must be a string or an array of blocks", f"{where}.content")
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    from ..images import with_images

    message = {"role": "tool", "content": with_images(text, pictures)}
    if isinstance(block.get("tool_use_id"), str):
        message["tool_call_id"] = block["tool_use_id"]
    return message


def part(block: object, where: str, texts: list, pictures: list, expected: str) -> None:
    """A text or image block, added to `texts` or `pictures`."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        texts.append(block["text"])
    elif kind == "image":
        pictures.append(image(block, where))
    else:
        raise bad(f"{where} must be {expected}", where)


def assistant(blocks: list, where: str) -> dict:
    """An earlier answer: its text, its thinking (as `reasoning_content`) and its tool calls."""
    texts, reasoning, calls = [], [], []
    for k, block in enumerate(blocks):
        at = f"{where}.content[{k}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "redacted_thinking":
            continue  # Claude's own, encrypted: nothing of ours
        elif kind == "tool_use":
            calls.append(tool_use(block, at))
        else:
            raise bad(f"{at} must be a text, thinking or tool_use block", at)
    message: dict = {"role": "assistant", "content": "".join(texts)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def tool_use(block: dict, where: str) -> dict:
    arguments = block.get("input") or {}
    if not isinstance(block.get("name"), str) or not isinstance(arguments, dict):
        raise bad(f"{where} needs a name and an input object", where)
    return {"type": "function", "function": {"name": block["name"], "arguments": arguments}}


def image(block: dict, where: str):
    """A base64 image source as an Image (openai.image's checks). A `url` source is refused: the
    server fetches nothing."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        raise bad(f"{where}.source: the server fetches no URLs; send the image as base64 data", where)
    if kind != "base64" or not isinstance(source.get("data"), str):
        raise bad(f'{where}.source must be {{"type": "base64", "media_type": ..., "data": ...}}', where)
    return decoded(source["data"], f"{where}.source.data", where)
