"""Tools from MCP servers: a real server written here with the SDK's FastMCP (MCPServer in mcp 2),
started over stdio; the loop with a scripted engine, one run through the CLI and a scripted GGUF."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from qwenlocal.agent.approval import ASK, YES, Approver
from qwenlocal.agent.loop import Agent
from qwenlocal.agent.mcp import McpServers, ServerSpec, from_flag
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import TOOLS, Workspace
from qwenlocal.agent.undo import Run, undo_last
from qwenlocal.engine import GenerateOptions
from qwenlocal.errors import QwenlocalError
from qwenlocal.models.catalog import load
from qwenlocal.testing import ggufs
from qwenlocal.testing.engine import FakeEngine
from qwenlocal.testing.toolcalls import tool_call as call

SERVER = '''
import os, time
from pathlib import Path
try:
    from mcp.server.mcpserver import MCPServer as FastMCP  # mcp 2
except ImportError:
    from mcp.server.fastmcp import FastMCP  # mcp 1

server = FastMCP("calc")

@server.tool()
def add(a: float, b: float) -> str:
    """Add two numbers."""
    return str(a + b)

@server.tool()
def write_note(path: str, text: str) -> str:
    """Write text to a file in the current folder."""
    Path(path).write_text(text)
    return f"wrote {len(text)} characters to {path}"

@server.tool()
def hang() -> str:
    """Never answers."""
    time.sleep(3600)
    return "never"

@server.tool()
def crash() -> str:
    """Exits the server."""
    os._exit(3)

if __name__ == "__main__":
    server.run()
'''
TIMEOUT = 5.0  # seconds for a call: the hanging tool's test waits this long
OPTIONS = GenerateOptions(sampling=load().models["qwen3.5-2b"].sampling(False))


@pytest.fixture
def server_file(tmp_path) -> Path:
    path = tmp_path / "calc_server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "keep.txt").write_text("as it was\n")
    return root


@pytest.fixture
def servers(server_file, project):
    started = McpServers([ServerSpec("calc", sys.executable, (str(server_file),))], str(project), TIMEOUT)
    tools = started.start()
    yield started, tools
    started.close()


def _agent(project, tools, replies, approver):
    engine = FakeEngine(replies)
    workspace = Workspace(project, Shell(sandbox=False))
    run = Run(project)
    agent = Agent(engine, OPTIONS, workspace, approver, run, lambda e: None, tools=(*TOOLS, *tools))
    return agent, engine, run


def _observations(engine) -> list[str]:
    return [m["content"] for m in engine.seen[-1] if m["role"] == "tool"]


def test_the_servers_tools_are_offered_with_their_schemas(servers):
    _, tools = servers
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"calc__add", "calc__write_note", "calc__hang", "calc__crash"}
    add = by_name["calc__add"].schema()["function"]
    assert add["description"] == "Add two numbers."
    assert add["parameters"]["properties"]["a"]["type"] == "number"
    assert add["parameters"]["required"] == ["a", "b"]


def test_a_call_is_approved_typed_by_its_schema_and_answered(servers, project):
    _, tools = servers
    asked = []
    approver = Approver(mode=ASK, ask=lambda tool, preview: asked.append((tool, preview)) or "y")
    agent, engine, _ = _agent(project, tools, [call("calc__add", a="2", b="3.5"), "It is 5.5."], approver)
    assert agent.solve("add 2 and 3.5").reason == "answered"
    assert asked == [("calc__add", 'calc__add({"a": 2, "b": 3.5})')]  # numbers, by the schema
    assert _observations(engine) == ["5.5"]


def test_a_refused_call_does_not_run(servers, project):
    _, tools = servers
    reply = call("calc__write_note", path="note.txt", text="hi")
    agent, engine, _ = _agent(project, tools, [reply, "ok"], Approver(mode=ASK, interactive=False))
    agent.solve("write")
    assert not (project / "note.txt").exists()
    assert _observations(engine)[0].startswith("Not done: not approved")


def test_auto_mcp_runs_without_asking_and_undo_reverts_the_step(servers, project):
    _, tools = servers
    reply = call("calc__write_note", path="note.txt", text="hello")
    agent, engine, run = _agent(project, tools, [reply, "ok"], Approver(mode=ASK, auto_mcp=True))
    assert agent.solve("write a note").reason == "answered"
    assert (project / "note.txt").read_text() == "hello"
    assert _observations(engine) == ["wrote 5 characters to note.txt"]
    records = [json.loads(line) for line in run.transcript.read_text().splitlines()]
    approval = next(r for r in records if r["type"] == "approval")
    assert approval["tool"] == "calc__write_note" and approval["why"] == "--auto-mcp"
    undo_last(project)  # snapshotted before it, as a shell step
    assert not (project / "note.txt").exists() and (project / "keep.txt").read_text() == "as it was\n"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_hanging_tool_times_out_and_the_server_still_answers(servers, project):
    _, tools = servers
    replies = [call("calc__hang"), call("calc__add", a="1", b="2"), "done"]
    agent, engine, _ = _agent(project, tools, replies, Approver(mode=YES))
    start = time.monotonic()
    assert agent.solve("hang").reason == "answered"
    assert time.monotonic() - start < TIMEOUT + 10
    hung, added = _observations(engine)
    assert hung == f"Error: the MCP server 'calc' failed: timed out after {TIMEOUT:g} s"
    assert added == "3.0"


def test_a_crashing_server_is_an_observation_and_so_is_every_later_call(servers, project):
    _, tools = servers
    replies = [call("calc__crash"), call("calc__add", a="1", b="2"), "done"]
    agent, engine, _ = _agent(project, tools, replies, Approver(mode=YES))
    assert agent.solve("crash").reason == "answered"
    crashed, later = _observations(engine)
    assert crashed.startswith("Error: the MCP server 'calc' ") and "\n" not in crashed
    assert later.startswith("Error: the MCP server 'calc' ") and "\n" not in later


def test_a_server_that_fails_to_start_is_an_error_naming_it(project):
    missing = McpServers([ServerSpec("nope", "qwenlocal-no-such-command")], str(project), TIMEOUT)
    with pytest.raises(QwenlocalError, match="the MCP server 'nope' failed to start"):
        missing.start()
    crashing = McpServers(
        [ServerSpec("bad", sys.executable, ("-c", "import sys; sys.exit(1)"))], str(project)
    )
    with pytest.raises(QwenlocalError, match="the MCP server 'bad' failed to start"):
        crashing.start()


def test_flag_names():
    assert from_flag("calc=python server.py --x", set()) == ServerSpec("calc", "python", ("server.py", "--x"))
    assert from_flag("npx -y files-server", set()).name == "files-server"
    assert from_flag("python calc.py", {"calc"}).name == "calc2"


# -- through the CLI ---------------------------------------------------------------------------


def test_list_tools_prints_the_builtin_and_the_servers_tools(cli, server_file, project):
    result = cli(
        "agent", "--list-tools", "--workspace", str(project), "--mcp", f"calc={sys.executable} {server_file}"
    )
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.decode().splitlines()]
    assert names == [t.name for t in TOOLS] + ["calc__add", "calc__write_note", "calc__hang", "calc__crash"]


def test_config_tables_and_their_errors(cli, server_file, project, isolated_home):
    config = isolated_home / "config.toml"
    config.write_text(f'[mcp.calc]\ncommand = "{sys.executable}"\nargs = ["{server_file}"]\n')
    env = {"QWENLOCAL_CONFIG": str(config)}
    result = cli("agent", "--list-tools", "--json", "--workspace", str(project), env=env)
    assert result.returncode == 0, result.stderr
    assert "calc__add" in [t["function"]["name"] for t in json.loads(result.stdout)]
    config.write_text('[mcp.calc]\ncommand = "x"\nargv = []\n')
    bad = cli("agent", "--list-tools", "--workspace", str(project), env=env)
    assert bad.returncode == 2 and b"unknown key 'argv' in [mcp.calc]" in bad.stderr


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_an_agent_run_calls_the_servers_tool_end_to_end(cli, server_file, project, tmp_path):
    reply = call("calc__add", a="40", b="2")
    model = ggufs.write_scripted(tmp_path / "mcp.gguf", {"\n\n": reply}, after_tool={"\n\n": "It is 42."})
    result = cli(
        "agent", "-m", str(model), "--no-think", "--workspace", str(project), "--auto-mcp",
        "--mcp", f"calc={sys.executable} {server_file}", "add 40 and 2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "It is 42.\n"
    err = result.stderr.decode()
    assert "MCP tools: 4 from calc" in err and "--auto-mcp" in err
    line = next(x for x in err.splitlines() if "transcript:" in x)
    records = [json.loads(r) for r in Path(line.split("transcript:", 1)[1].strip()).read_text().splitlines()]
    [result_record] = [r for r in records if r["type"] == "tool_result"]
    assert result_record["tool"] == "calc__add" and result_record["result"] == "42.0"
