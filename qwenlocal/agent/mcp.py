"""Tools from MCP servers (Model Context Protocol), over stdio with the official `mcp` SDK.

Each server named in the config (`[mcp.NAME]`) or with `--mcp` is started in the workspace when the
agent starts; its tools join the table (tools.py) as `NAME__tool`, with the server's own JSON
schemas, and are approved, snapshotted and recorded like a shell command (Kind.SHELL). The SDK is
async: one background thread runs an event loop with one task per server, and the agent's calls
wait on it with a timeout, so a server that hangs or crashes ends as a one-line observation,
never a hung agent. The `mcp` package is imported only here, and only when a server is used.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shlex
import tempfile
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from ..errors import ExitCode, QwenlocalError
from .confine import ToolError
from .tools import Kind, Param, Tool
from .workspace import ImageRead, cap

SEP = "__"  # NAME__tool
START_TIMEOUT = 30.0  # seconds for a server to start and list its tools
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def from_flag(text: str, taken: set[str]) -> ServerSpec:
    """`--mcp "command args"` (or "NAME=command args"): named NAME, else after the program."""
    name = ""
    head, _, rest = text.partition("=")
    if rest and re.fullmatch(r"[A-Za-z0-9_-]+", head.strip()):
        name, text = head.strip(), rest
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise QwenlocalError(f"cannot read --mcp {text!r}: {error}", code=ExitCode.USAGE) from None
    if not words:
        raise QwenlocalError("--mcp needs a command, e.g. --mcp 'npx server'", code=ExitCode.USAGE)
    program = os.path.basename(words[-1] if len(words) > 1 else words[0]).rsplit(".", 1)[0]
    base = name or _NAME.sub("_", program).replace(SEP, "_") or "mcp"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return ServerSpec(name, words[0], tuple(words[1:]))


class McpError(Exception):
    """A call that did not come back with a result; the message is one line, for the model."""


class _Server:
    """One server's session, living in the background loop's task `run`."""

    def __init__(self, spec: ServerSpec, cwd: str, timeout: float) -> None:
        self.spec, self.cwd, self.timeout = spec, cwd, timeout
        self.ready: Future = Future()  # its tools, or the exception that stopped it
        self.queue: asyncio.Queue | None = None
        self.dead: str | None = None  # why it can take no more calls
        self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    def last_words(self) -> str:
        """The last line the server wrote on stderr (why it failed, often)."""
        try:
            self.stderr.seek(0)
            lines = [line.strip() for line in self.stderr.read()[-4000:].splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:200]}" if lines else ""

    async def run(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        self.queue = asyncio.Queue()
        params = StdioServerParameters(
            command=self.spec.command,
            args=list(self.spec.args),
            env=dict(self.spec.env) or None,
            cwd=self.cwd,
        )
        try:
            async with stdio_client(params, errlog=self.stderr) as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), START_TIMEOUT)
                    listed = await asyncio.wait_for(session.list_tools(), START_TIMEOUT)
                    self.ready.set_result(listed.tools)
                    await self._serve(session)
        except BaseException as error:  # noqa: BLE001 - the server's end, whatever it was
            self.dead = _why(error) + ("" if self.ready.done() else self.last_words())
            if not self.ready.done():
                self.ready.set_exception(McpError(self.dead))
            while self.queue is not None and not self.queue.empty():
                request = self.queue.get_nowait()
                if request is not None:
                    request[2].set_exception(McpError(self.dead))
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise

    async def _serve(self, session) -> None:
        while (request := await self.queue.get()) is not None:
            name, arguments, future = request
            try:
                result = await asyncio.wait_for(session.call_tool(name, arguments), self.timeout)
            except TimeoutError:
                future.set_exception(McpError(f"timed out after {self.timeout:g} s"))
                continue
            except Exception as error:  # noqa: BLE001 - a protocol error is the call's outcome
                future.set_exception(McpError(_why(error)))
                if not isinstance(error, _protocol_errors()):
                    raise
                continue
            future.set_result(result)


def _protocol_errors() -> tuple[type, ...]:
    """Errors after which the session is still usable (the server answered with an error)."""
    from mcp.shared import exceptions  # McpError in mcp 1, MCPError in mcp 2

    return tuple(getattr(exceptions, n) for n in ("MCPError", "McpError") if hasattr(exceptions, n))


def _why(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, FileNotFoundError):
        return f"command not found ({error.filename or error})"
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "no answer (timed out)"
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300] or "the connection closed (it crashed?)"


class McpServers:
    """The servers of one agent run: started together, their tools as table entries, stopped."""

    def __init__(self, specs: list[ServerSpec], cwd: str, timeout: float = 60.0, images: bool = False):
        self.timeout, self.images = timeout, images
        self.servers = {spec.name: _Server(spec, cwd, timeout) for spec in specs}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self.tasks: list[Future] = []

    def start(self) -> tuple[Tool, ...]:
        """Start every server and list its tools; QwenlocalError naming the first that fails."""
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(s.run(), self.loop) for s in self.servers.values()]
        tools: list[Tool] = []
        for name, server in self.servers.items():
            try:
                listed = server.ready.result(START_TIMEOUT + 5)
            except (McpError, FutureTimeout) as error:
                self.close()
                why = str(error) or "no answer (timed out)"
                raise QwenlocalError(
                    f"the MCP server '{name}' failed to start: {why}",
                    hint=f"check its command ({shlex.join([server.spec.command, *server.spec.args])})",
                    code=ExitCode.USAGE,
                ) from None
            tools += [self._entry(name, t) for t in listed]
        return tuple(tools)

    def _entry(self, server: str, listed) -> Tool:
        schema = getattr(listed, "input_schema", None) or getattr(listed, "inputSchema", None) or {}
        schema = dict(schema) if isinstance(schema, dict) else {}
        schema.setdefault("type", "object")
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        params = tuple(Param(p, required=p in required) for p in properties)
        name = f"{server}{SEP}{listed.name}"

        def call(**arguments) -> str:
            return self.call(server, listed.name, arguments)

        description = (listed.description or "").strip() or f"{listed.name} from the MCP server {server}"
        return Tool(name, Kind.SHELL, description, params, server=server, run=call, input_schema=schema)

    def call(self, server_name: str, tool: str, arguments: dict) -> str:
        """The call's result as an observation; ToolError (one line) when there is none."""
        server = self.servers[server_name]
        if server.dead:
            raise ToolError(f"the MCP server '{server_name}' is not running: {server.dead}")
        future: Future = Future()
        self.loop.call_soon_threadsafe(server.queue.put_nowait, (tool, arguments, future))
        try:
            result = future.result(self.timeout + 5)
        except McpError as error:
            raise ToolError(f"the MCP server '{server_name}' failed: {error}") from None
        except FutureTimeout:
            raise ToolError(f"the MCP server '{server_name}': timed out after {self.timeout:g} s") from None
        return self._observation(server_name, tool, result)

    def _observation(self, server: str, tool: str, result) -> str:
        texts, image = [], None
        for block in getattr(result, "content", None) or []:
            kind = getattr(block, "type", "")
            if kind == "text":
                texts.append(block.text)
            elif kind == "image" and self.images and image is None:
                image = _image(block, f"{server}{SEP}{tool}")
                texts.append("[an image]")
            else:
                texts.append(f"[{kind or 'unknown'} content]")
        text = cap("\n".join(texts).strip() or "(no output)")
        if getattr(result, "is_error", None) or getattr(result, "isError", False):
            raise ToolError(f"{server}{SEP}{tool} failed: {text}")
        if image is not None:
            shown = ImageRead(text)
            shown.image = image
            return shown
        return text

    def close(self) -> None:
        """Stop every server (the SDK ends its process) and the loop; bounded in time."""
        if not self.thread.is_alive():
            return
        for server in self.servers.values():
            if server.queue is not None:
                self.loop.call_soon_threadsafe(server.queue.put_nowait, None)
        for task in self.tasks:
            try:
                task.result(10)
            except BaseException:  # noqa: BLE001 - stopping: its error was reported
                task.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        for server in self.servers.values():
            server.stderr.close()


def _image(block, name: str):
    from .. import images

    try:
        return images.load(base64.b64decode(block.data), name)
    except Exception:  # noqa: BLE001 - an image the model cannot see is left out
        return None
