"""`run` and `chat` through a running `qwenlocal serve`: the model stays loaded between commands.

A server is used only when it serves the very file these settings would load (its /health gives
the file's `fingerprint`, which names it without saying where it is): `--server URL` asks for one
(an error when it cannot be used), otherwise the default port on this machine is tried briefly, and
`--no-server` never uses one. RemoteEngine is an Engine (engine/base.py) whose events come from the
server's stream, so the rest of the command is the same.
Standard library only (http.client): nothing heavy to import.

The server's context is the server's: a RemoteEngine cannot grow it (`grow` says None), so chat
moves old turns out instead. It reads text only: chat switches to a model loaded here for images.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..config import DEFAULT_PORT
from ..errors import ExitCode, QwenlocalError
from ..events import Done, Event, ReasoningDelta, Stats, TextDelta
from .base import GenerateOptions

DEFAULT_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"


class Connection:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QwenlocalError(f"not a server URL: {url}", hint=f"e.g. --server {DEFAULT_SERVER}")
        self.url, self.timeout = url, timeout
        self.n_ctx, self.spec = 0, None
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._make = lambda: kind(parts.hostname, parts.port, timeout=self.timeout)
        self.prefix = parts.path.rstrip("/").removesuffix("/v1")
        key = os.environ.get("QWENLOCAL_API_KEY")
        self.headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {key}"} if key else {}),
        }

    @contextmanager
    def request(self, method: str, path: str, body: dict | None = None) -> Iterator[http.client.HTTPResponse]:
        """The response, on a connection of its own that is closed on leaving: closing it is how
        the server learns that a stream's reader went away (Ctrl-C), and stops generating."""
        connection = self._make()
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, self.prefix + path, body=data, headers=self.headers)
            yield connection.getresponse()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        with self.request(method, path, body) as response:
            data = json.loads(response.read() or b"{}")
        if response.status >= 400:
            raise server_error(self.url, data)
        return data


def server_error(url: str, data: dict) -> QwenlocalError:
    error = data.get("error") or {}
    code = ExitCode.CONTEXT_OVERFLOW if error.get("code") == "context_length_exceeded" else ExitCode.ERROR
    return QwenlocalError(f"the server at {url}: {error.get('message', 'failed')}", code=code)


def find(url: str | None, path: Path) -> Connection | None:
    """The server to use for the model file `path`: None when there is none for it. A server named
    with --server that cannot be used is an error; the default one is only tried."""
    named = url is not None
    connection = Connection(url or DEFAULT_SERVER, timeout=10.0 if named else 0.3)
    try:
        health = connection.json("GET", "/health")
    except (OSError, QwenlocalError, ValueError) as error:
        if named:
            raise QwenlocalError(
                f"cannot use the server at {url}: {error}",
                hint="start it with `qwenlocal serve`, or leave out --server to load the model here",
                code=ExitCode.ERROR,
            ) from None
        return None
    served = (health.get("qwenlocal") or {}).get("file")
    if served != fingerprint(path):
        if named:
            raise QwenlocalError(
                f"the server at {url} serves another model file ({health.get('model')}), not {path}",
                hint="start a server for this model, or leave out --server (or add --no-server)",
                code=ExitCode.ERROR,
            )
        return None
    connection.timeout = None  # an answer may take long
    connection.n_ctx = health["qwenlocal"].get("n_ctx", 0)
    connection.spec = health["qwenlocal"].get("spec")  # the catalog model it is, for its defaults
    return connection


def fingerprint(path: Path) -> str:
    """Which file this is, the same from any path to it (a link, a relative path), without saying
    where it is: a server's /health is open to any local page or process."""
    st = path.stat()
    return hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]


class RemoteEngine:  # an Engine (qwenlocal.engine.Engine)
    """The server's model: its context is the size the server was started with, and it reads text
    only (images are read by a model loaded here: see the module's docstring)."""

    can_resize = can_attach_projector = can_see = False
    kv_cache = ""  # the server's own
    trained_ctx = 0

    def __init__(self, connection: Connection, path: Path) -> None:
        self.connection, self.path = connection, path
        self.n_ctx: int = getattr(connection, "n_ctx", 0)
        self.max_ctx = self.n_ctx

    def grow(self, needed: int) -> None:
        return None

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        raise NotImplementedError("a server's context is the server's")

    def attach_projector(self, path: Path) -> None:
        raise NotImplementedError("the server reads text: images are read by a model loaded here")

    def keep_states(self, max_bytes: int) -> None:
        pass  # the server keeps its own

    def count_tokens(self, messages: list[dict], think: bool, limit: int) -> int:
        return len(self.prompt_tokens(messages, think))

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint=True,
        keep=(),  # the server keeps its own states
    ) -> Iterator[Event]:
        s = options.sampling
        body = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "chat_template_kwargs": {"enable_thinking": options.think},
            "think_budget": options.think_budget or 0,
            **dict(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p),
            **dict(presence_penalty=s.presence_penalty, repeat_penalty=s.repeat_penalty),
            **({"max_tokens": options.max_tokens} if options.max_tokens else {}),
            **({"seed": options.seed} if options.seed is not None else {}),
            # the text as the model wrote it, tool calls in it, as the local engine streams it
            # (the agent parses the calls itself)
            **({"tools": tools, "raw_text": True} if tools else {}),
            **({"response_format": response_format(options.grammar)} if options.grammar else {}),
        }
        started = time.perf_counter()
        answer, reasoning, finish, timings = [], [], "stop", {}
        first = None
        with self.connection.request("POST", "/v1/chat/completions", body) as response:
            if response.status >= 400:
                raise server_error(self.connection.url, json.loads(response.read() or b"{}"))
            for chunk in events(response):
                if "error" in chunk:
                    raise server_error(self.connection.url, chunk)
                timings = chunk.get("timings") or timings
                for choice in chunk.get("choices", ()):
                    delta = choice.get("delta") or {}
                    if first is None and (delta.get("content") or delta.get("reasoning_content")):
                        first = time.perf_counter()
                    if delta.get("reasoning_content"):
                        reasoning.append(delta["reasoning_content"])
                        yield ReasoningDelta(delta["reasoning_content"])
                    if delta.get("content"):
                        answer.append(delta["content"])
                        yield TextDelta(delta["content"])
                    finish = {None: finish, "stop": "stop"}.get(choice.get("finish_reason"), "length")
        ttft = (first or time.perf_counter()) - started
        yield Done("".join(answer), "".join(reasoning), finish, stats(timings, ttft))

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        body = {"messages": messages, "think": think, "tools": tools}
        return self.connection.json("POST", "/qwenlocal/prompt", body)["tokens"]

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        body = {"messages": messages, "think": think, "tools": tools, "generation": generation}
        return self.connection.json("POST", "/qwenlocal/prompt", body)["text"]

    def close(self) -> None:
        pass


def response_format(grammar) -> dict:
    """`run --schema` / `--json-object` through a server: the schema its grammar was made from."""
    if not grammar.schema:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": json.loads(grammar.schema)}}


def events(response: http.client.HTTPResponse) -> Iterator[dict]:
    """The JSON objects of a server-sent event stream, up to `data: [DONE]`."""
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def stats(timings: dict, ttft: float) -> Stats:
    """The server's own measures of the answer (its `timings`); the first token as seen here."""
    names = ("prompt_tokens", "prompt_s", "generated_tokens", "reasoning_tokens", "generate_s", "n_ctx")
    values = {name: timings.get(name, 0) for name in names}
    return Stats(load_s=0.0, ttft_s=ttft, reused_tokens=timings.get("reused_tokens", 0), **values)
