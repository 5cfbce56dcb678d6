"""An OpenAI Responses request (`POST /v1/responses`, the subset Codex-style agents use) read into
what the engine takes: our messages, tools and GenerateOptions.

The options go through openai.py: the request's settings are rewritten as the equivalent
chat-completions body (flat function tools nested under `function`, `text.format` as
`response_format`...) and read by `parse_request`, so both APIs check and mean the same; an error
names the Responses parameter. The input items become our messages here, with `instructions` as
the system message. `reasoning.effort` turns thinking off ("none") or on, with a budget of reasoning
tokens that grows with the effort: minimal 256, low 1024, medium 4096, high (xhigh, max) none of its
own; the server's --think-budget stays a cap. Unset, the model's default holds, as in `serve`'s chat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..engine import GenerateOptions
from .openai import ApiError, bad, call, content, parse_request

# reasoning tokens per effort; None: as many as the server allows ("high" and above)
EFFORT_BUDGET = {"minimal": 256, "low": 1024, "medium": 4096, "high": None, "xhigh": None, "max": None}
# sampling settings of llama-server and vLLM that clients send in `extra_body`, as in chat completions
EXTRAS = ("top_k", "min_p", "seed", "presence_penalty", "frequency_penalty", "repeat_penalty")
# chat-completions names in openai.py's errors, as the Responses request spells them
RENAMED = (
    ("max_completion_tokens", "max_output_tokens"),
    ("response_format.json_schema", "text.format"),
    ("response_format", "text.format"),
    ("chat_template_kwargs", "reasoning"),
    (".function.", "."),
)
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


@dataclass(frozen=True)
class ResponsesRequest:
    history: list[dict]  # the conversation without the instructions: what a later response goes on from
    messages: list[dict]  # what the model reads: the instructions first, then the history
    options: GenerateOptions
    tools: list[dict] | None  # in chat-completions' shape, as the engine takes them
    stream: bool
    store: bool
    echo: dict  # the request's settings, as the response object repeats them


def parse(
    body: object,
    defaults: Callable[[bool | None], GenerateOptions],
    earlier: Callable[[str], list[dict]],
) -> ResponsesRequest:
    """`earlier(id)`: the conversation a stored response goes on from (a 404 when there is none)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    if body.get("background"):
        raise bad("background responses are not supported: leave background unset", "background")
    if body.get("conversation") is not None:
        raise bad("conversation objects are not supported: use previous_response_id", "conversation")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad("instructions must be a string", "instructions")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise bad("previous_response_id must be a string", "previous_response_id")
    store = body.get("store", True)
    if not isinstance(store, bool | None):
        raise bad("store must be true or false", "store")
    effort = reasoning_effort(body.get("reasoning"))
    chat = chat_body(body, effort)
    try:
        read = parse_request(chat, defaults)
    except ApiError as error:
        raise renamed(error) from None
    options = read.options
    budget = EFFORT_BUDGET.get(effort or "")
    if budget is not None:
        options = replace(options, think_budget=min(budget, options.think_budget or budget))
    history = (earlier(previous) if previous else []) + conversation(body.get("input"))
    messages = arranged(instructions, history)
    kept = store is not False
    return ResponsesRequest(history, messages, options, read.tools, read.stream, kept, echoed(body, options))


def echoed(body: dict, options: GenerateOptions) -> dict:
    """The request's settings as the response object repeats them (the sampling as used)."""
    return {
        "instructions": body.get("instructions"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "temperature": options.sampling.temperature,
        "top_p": options.sampling.top_p,
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "store": body.get("store", True) is not False,
        "metadata": body.get("metadata") or {},
        "truncation": "disabled",
        "background": False,
        "user": None,
    }


def renamed(error: ApiError) -> ApiError:
    """openai.py's error, naming the parameter as this request spells it."""
    message, param = error.message, error.param
    for old, new in RENAMED:
        message, param = message.replace(old, new), param and param.replace(old, new)
    return ApiError(error.status, message, param, error.code)


def reasoning_effort(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("reasoning must be an object", "reasoning")
    effort = raw.get("effort")
    if effort is not None and effort != "none" and effort not in EFFORT_BUDGET:
        efforts = "none, minimal, low, medium, high, xhigh or max"
        raise bad(f"reasoning.effort must be {efforts}", "reasoning.effort")
    return effort


def chat_body(body: dict, effort: str | None) -> dict:
    """The request's settings as the chat-completions body that means the same."""
    chat: dict = {
        "messages": [{"role": "user", "content": ""}],  # a stand-in: conversation() reads the input
        "max_completion_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "stream": body.get("stream"),
        "tools": function_tools(body.get("tools")),
        "tool_choice": choice(body.get("tool_choice")),
        "response_format": text_format(body.get("text")),
        **{name: body[name] for name in EXTRAS if name in body},
    }
    if effort is not None:
        chat["chat_template_kwargs"] = {"enable_thinking": effort != "none"}
    return chat


def function_tools(raw: object) -> list[dict] | None:
    """Responses' flat function tools ({"type": "function", "name", "parameters"...}) in
    chat-completions' shape ({"type": "function", "function": {...}})."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("tools must be an array", "tools")
    out = []
    for k, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise bad(f"tools[{k}]: only function tools are supported here, not {kind!r}", f"tools[{k}]")
        keys = ("name", "description", "parameters")
        function = {key: tool[key] for key in keys if tool.get(key) is not None}
        out.append({"type": "function", "function": function})
    return out


def choice(raw: object) -> object:
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    choices = '"none", "auto", "required" or {"type": "function", "name": ...}'
    raise bad(f"tool_choice must be {choices}", "tool_choice")


def text_format(raw: object) -> dict | None:
    """`text.format` as a `response_format`: json_schema's name, schema and strict are flat here."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("text must be an object", "text")
    spec = raw.get("format")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise bad("text.format must be an object", "text.format")
    if spec.get("type") != "json_schema":
        return spec
    inner = {key: spec[key] for key in ("name", "schema", "strict") if key in spec}
    return {"type": "json_schema", "json_schema": inner}


def conversation(raw: object) -> list[dict]:
    """The input (a string, or items) as our messages. An assistant's turn comes as several items
    (reasoning, a message, function calls): they join into one assistant message, as the template
    writes a turn."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise bad("input must be a string or a non-empty array of items", "input")
    messages: list[dict] = []
    for j, item in enumerate(raw):
        where = f"input[{j}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object", where)
        kind = item.get("type", "message")
        last = messages[-1] if messages and messages[-1]["role"] == "assistant" else None
        if kind == "message":
            said = message(item, where)
            bare = last is not None and not last["content"] and "tool_calls" not in last
            if bare and said["role"] == "assistant":
                last["content"] = said["content"]  # the answer after its reasoning
            else:
                messages.append(said)
        elif kind == "function_call":
            made = function_call(item, where)
            if last is None:
                messages.append(last := {"role": "assistant", "content": ""})
            last.setdefault("tool_calls", []).append(made)
        elif kind == "function_call_output":
            messages.append(function_output(item, where))
        elif kind == "reasoning":
            text = "".join(p.get("text") or "" for p in item.get("content") or () if isinstance(p, dict))
            if text:  # a turn begins with its reasoning
                messages.append({"role": "assistant", "content": "", "reasoning_content": text})
        else:
            raise bad(
                f"{where}: items of type {kind!r} are not supported here (message, function_call, "
                "function_call_output, reasoning are)",
                f"{where}.type",
            )
    return messages


def message(item: dict, where: str) -> dict:
    role = ROLES.get(item.get("role"))
    if role is None:
        raise bad(f"{where} needs a role: user, assistant, system or developer", f"{where}.role")
    said = content(parts(item.get("content"), where), where)
    if role == "system" and not isinstance(said, str):
        raise bad(f"{where}: a {item['role']} message cannot hold images", f"{where}.content")
    return {"role": role, "content": said}


def parts(value: object, where: str) -> object:
    """Responses' content parts as chat-completions' (text, image_url), for openai.content to read
    and check (an image must be a base64 data: URI)."""
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for k, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            out.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            out.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise bad(
                f"{where}.content[{k}] must be an input_text, output_text or input_image part "
                "(an image as a base64 data: URL in image_url)",
                f"{where}.content[{k}]",
            )
    return out


def function_call(item: dict, where: str) -> dict:
    """An earlier call of the model's, as an assistant's tool call (its arguments checked JSON)."""
    for field in ("call_id", "name"):
        if not isinstance(item.get(field), str):
            raise bad(f"{where} needs a {field}", f"{where}.{field}")
    try:
        made = call({"function": {"name": item["name"], "arguments": item.get("arguments")}}, where)
    except ApiError as error:
        raise renamed(error) from None
    return {**made, "id": item["call_id"]}


def function_output(item: dict, where: str) -> dict:
    """A call's result, as a tool message (its text; Responses may send it as text parts)."""
    if not isinstance(item.get("call_id"), str):
        raise bad(f"{where} needs a call_id", f"{where}.call_id")
    output = content(parts(item.get("output"), where), where)
    if not isinstance(output, str):
        raise bad(f"{where}.output: images in a function's output are not supported", f"{where}.output")
    return {"role": "tool", "content": output, "tool_call_id": item["call_id"]}


def arranged(instructions: str | None, history: list[dict]) -> list[dict]:
    """What the model reads. Qwen's template takes one system message, first: the instructions and
    the system (developer) messages the conversation begins with are joined into it; a later one
    is given as a user message, where it was said."""
    lead = [instructions] if instructions else []
    k = 0
    while k < len(history) and history[k]["role"] == "system":
        lead.append(history[k]["content"])
        k += 1
    rest = [m if m["role"] != "system" else {**m, "role": "user"} for m in history[k:]]
    return ([{"role": "system", "content": "\n\n".join(lead)}] if lead else []) + rest
