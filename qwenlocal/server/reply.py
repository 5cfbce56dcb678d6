"""The engine's events as OpenAI's answer: deltas while streaming, the message at the end.

Reasoning goes to `reasoning_content`, the answer to `content`. With tools offered, the answer is
streamed up to a tool call's opening tag; the call itself is held back, read by the agent's parser
(typed by the tools' schemas) and sent as `tool_calls`. A `stop` string ends the content before it
(the engine has already stopped generating there)."""

from __future__ import annotations

import json
import secrets
import time

from ..engine.thinking import partial_suffix
from ..engine.toolcall import MARKERS, ToolCall, parse
from ..events import Done, Event, ReasoningDelta, Stats, TextDelta


class Assembler:
    """Feed engine events; get the deltas to send. `content`, `reasoning` and `calls` add up."""

    def __init__(self, tools: list[dict] | None, stop: tuple[str, ...] = ()) -> None:
        self.tools, self.stop = tools, stop
        self._targets = [(s, False) for s in stop] + [(m, True) for m in (MARKERS if tools else ())]
        self._pending = ""  # answer text held back: it may begin a stop string or a call
        self._call: str | None = None  # the text from a call's opening tag on
        self.stopped = False
        self.stop_found: str | None = None  # the `stop` string that ended the answer
        self.content = self.reasoning = ""
        self.calls: list[ToolCall] = []

    def feed(self, event: Event) -> list[dict]:
        if isinstance(event, ReasoningDelta):
            self.reasoning += event.text
            return [{"reasoning_content": event.text}]
        if isinstance(event, TextDelta):
            return self._text(event.text)
        return []

    def _text(self, text: str) -> list[dict]:
        if self.stopped:
            return []
        if self._call is not None:
            self._call += text
            return []
        self._pending += text
        found = [(self._pending.find(t), t, is_call) for t, is_call in self._targets if t in self._pending]
        if found:
            cut, target, is_call = min(found)
            before, rest, self._pending = self._pending[:cut], self._pending[cut:], ""
            if is_call:
                self._call = rest
                return self._say(before.rstrip())
            self.stopped, self.stop_found = True, target
            return self._say(before)
        hold = max((partial_suffix(self._pending, t) for t, _ in self._targets), default=0)
        out = self._pending[: len(self._pending) - hold]
        if self.tools:  # the whitespace before a call is not sent: it may be the last of the text
            out = out.rstrip()
        self._pending = self._pending[len(out) :]
        return self._say(out)

    def _say(self, text: str) -> list[dict]:
        if not text:
            return []
        self.content += text
        return [{"content": text}]

    def finish(self, done: Done) -> tuple[list[dict], str]:
        """The last deltas (held-back text, the tool calls) and the finish reason."""
        deltas: list[dict] = []
        if self._call is not None:
            parsed = parse(self._call, self.tools or [])
            if parsed.calls:
                self.calls = parsed.calls
                deltas += self._say(("\n\n" if self.content and parsed.text else "") + parsed.text)
                deltas.append({"tool_calls": [dict(call_json(c), index=k) for k, c in enumerate(self.calls)]})
            else:  # not a readable call after all: it is text
                deltas += self._say(self._call)
        elif not self.stopped:
            deltas += self._say(self._pending)
        self._pending = ""
        if self.calls:
            return deltas, "tool_calls"
        return deltas, "length" if done.finish in ("length", "context") else "stop"


def call_json(call: ToolCall) -> dict:
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def usage(stats: Stats) -> dict:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.reused_tokens},
        "completion_tokens_details": {"reasoning_tokens": stats.reasoning_tokens},
    }


class Reply:
    """The frame of one answer: its id, time and model, around deltas or the whole message."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model

    def _frame(self, kind: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunk(self, delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame("chat.completion.chunk", [choice])

    def usage_chunk(self, stats: Stats) -> dict:
        """The extra last chunk of `stream_options.include_usage`; `timings` as llama-server's."""
        return {**self._frame("chat.completion.chunk", []), "usage": usage(stats), "timings": stats.as_dict()}

    def completion(self, assembler: Assembler, finish: str, stats: Stats) -> dict:
        message: dict = {"role": "assistant", "content": assembler.content or None}
        if assembler.reasoning:
            message["reasoning_content"] = assembler.reasoning
        if assembler.calls:
            message["tool_calls"] = [call_json(c) for c in assembler.calls]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**self._frame("chat.completion", [choice]), "usage": usage(stats), "timings": stats.as_dict()}
