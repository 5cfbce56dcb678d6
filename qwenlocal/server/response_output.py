"""The engine's events as a Responses answer: output items (reasoning, message, function_call), the
stream events that build them, and the response object around them.

reply.Assembler does the reading (reasoning apart from the answer, tool calls parsed and typed by
the tools' schemas); its deltas are turned here into items. An item is streamed while it grows
(`output_item.added`, its content part, text deltas, then the `.done` events) and closed when the
next kind of output begins; function calls come whole at the end, as the assembler reads them only
once they are complete. Every event carries a `sequence_number`, as the openai SDK expects.
"""

from __future__ import annotations

import secrets
import time

from ..events import Done, Event, Stats
from .openai import ApiError
from .reply import Assembler

TEXT = {"reasoning": "response.reasoning_text", "message": "response.output_text"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def usage(stats: Stats) -> dict:
    return {
        "input_tokens": stats.prompt_tokens,
        # cached: read again from the kept state; nothing is "written" to a cache that costs more
        "input_tokens_details": {"cached_tokens": stats.reused_tokens, "cache_write_tokens": 0},
        "output_tokens": stats.generated_tokens,
        "output_tokens_details": {"reasoning_tokens": stats.reasoning_tokens},
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    }


class Output:
    """One response as it is made: feed engine events, get stream events (a client that does not
    stream ignores them); `response()` is the response object so far."""

    def __init__(self, model: str, echo: dict, assembler: Assembler) -> None:
        self.id, self.created = new_id("resp"), int(time.time())
        self.model, self.echo, self.assembler = model, echo, assembler
        self.items: list[dict] = []  # the items closed so far
        self.status, self.extra = "in_progress", {}
        self._open: dict | None = None  # the reasoning or message item being streamed
        self._text = ""
        self._seq = 0

    def response(self) -> dict:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": self.status,
            "model": self.model,
            "output": list(self.items),
            "usage": None,
            "error": None,
            "incomplete_details": None,
            **self.echo,
            **self.extra,
        }

    def _event(self, kind: str, **fields) -> dict:
        self._seq += 1
        return {"type": kind, "sequence_number": self._seq - 1, **fields}

    def start(self) -> list[dict]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def feed(self, event: Event) -> list[dict]:
        return [e for delta in self.assembler.feed(event) for e in self._delta(delta)]

    def finish(self, done: Done) -> list[dict]:
        """The last items and `response.completed` (or `.incomplete`: out of max_output_tokens)."""
        deltas, finish = self.assembler.finish(done)
        incomplete = finish == "length"
        events = [e for delta in deltas for e in self._delta(delta)]
        events += self._close("incomplete" if incomplete else "completed")
        self.status = "incomplete" if incomplete else "completed"
        self.extra = {"usage": usage(done.stats), "completed_at": int(time.time())}
        if incomplete:
            self.extra["incomplete_details"] = {"reason": "max_output_tokens"}
        return events + [self._event(f"response.{self.status}", response=self.response())]

    def fail(self, error: ApiError) -> list[dict]:
        """`response.failed` with the error (the generation failed, the server is stopping)."""
        events = self._close("incomplete")
        self.status = "failed"
        self.extra = {"error": {"code": error.code or "server_error", "message": error.message}}
        return events + [self._event("response.failed", response=self.response())]

    def assistant(self) -> dict:
        """What was said, as the assistant message a later turn goes on from."""
        said: dict = {"role": "assistant", "content": self.assembler.content}
        if self.assembler.reasoning:
            said["reasoning_content"] = self.assembler.reasoning
        if self.assembler.calls:
            said["tool_calls"] = [
                {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.assembler.calls
            ]
        return said

    def _delta(self, delta: dict) -> list[dict]:
        if "reasoning_content" in delta:
            return self._grow("reasoning", delta["reasoning_content"])
        if "content" in delta:
            return self._grow("message", delta["content"])
        return [e for call in delta.get("tool_calls", ()) for e in self._call(call)]

    def _grow(self, kind: str, text: str) -> list[dict]:
        """`text` added to the open item of `kind` (opened first, closing another)."""
        events = []
        if self._open is None or self._open["type"] != kind:
            events += self._close("completed")
            events += self._begin(kind)
        self._text += text
        where = {"item_id": self._open["id"], "output_index": len(self.items), "content_index": 0}
        logprobs = {"logprobs": []} if kind == "message" else {}
        return events + [self._event(f"{TEXT[kind]}.delta", **where, delta=text, **logprobs)]

    def _begin(self, kind: str) -> list[dict]:
        if kind == "reasoning":
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": []}
        else:
            item = {"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress"}
            item["content"] = []
        self._open, self._text = item, ""
        where = {"item_id": item["id"], "output_index": len(self.items), "content_index": 0}
        return [
            self._event("response.output_item.added", output_index=len(self.items), item=item),
            self._event("response.content_part.added", **where, part=self._part(kind, "")),
        ]

    def _part(self, kind: str, text: str) -> dict:
        if kind == "reasoning":
            return {"type": "reasoning_text", "text": text}
        return {"type": "output_text", "text": text, "annotations": []}

    def _close(self, status: str) -> list[dict]:
        """The open item's `.done` events; it joins the output."""
        item, self._open = self._open, None
        if item is None:
            return []
        kind, part = item["type"], self._part(item["type"], self._text)
        done = {**item, "content": [part]}
        if kind == "message":
            done["status"] = status
        where = {"item_id": item["id"], "output_index": len(self.items), "content_index": 0}
        logprobs = {"logprobs": []} if kind == "message" else {}
        events = [
            self._event(f"{TEXT[kind]}.done", **where, text=self._text, **logprobs),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=len(self.items), item=done),
        ]
        self.items.append(done)
        return events

    def _call(self, call: dict) -> list[dict]:
        """One function call, whole: its item, its arguments, done."""
        events = self._close("completed")
        index, shaped = len(self.items), call_json_of(call)
        item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", **shaped}
        where = {"item_id": item["id"], "output_index": index}
        arguments = shaped["arguments"]
        done = {**item, "status": "completed"}
        events += [
            self._event("response.output_item.added", output_index=index, item={**item, "arguments": ""}),
            self._event("response.function_call_arguments.delta", **where, delta=arguments),
            self._event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=arguments
            ),
            self._event("response.output_item.done", output_index=index, item=done),
        ]
        self.items.append(done)
        return events


def call_json_of(call: dict) -> dict:
    """A chat-completions `tool_calls` entry (reply.call_json's) as a function_call's fields."""
    function = call["function"]
    return {"call_id": call["id"], "name": function["name"], "arguments": function["arguments"]}
