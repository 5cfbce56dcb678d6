"""The server row (`python -m bench --only serve`): `qwenlocal serve` measured through HTTP.

- Multi-turn time to first token through the server, with a client that resends the whole
  history each turn (as OpenAI clients do): turn 8 over turn 1 (target <= 1.5); and two such
  clients taking turns on the one server (the prompt cache keeps the conversation left).
- The server's overhead per generated token against the engine called directly, in the same
  process on the same loaded model (target <= 3%): decode tokens/s as the client sees them.
- `qwenlocal run` to its first token (the whole process, one token) with a warm server against a
  cold start that loads the model.

Time to first token is the client's: from sending the request to the first streamed delta.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qwenlocal.engine import GenerateOptions
from qwenlocal.testing.server import serving

from . import filler, loadavg
from .report import replace_section

HEADING = "Server: time to first token"
CONTINUES = ("|", "Server overhead")  # the section's lines after its heading (report.replace_section)
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}


def stream(url: str, messages: list[dict], max_tokens: int) -> tuple[float, list[float], str]:
    """(time to first delta, the arrival time of every delta, the answer) of one streamed request."""
    body = {"messages": messages, "stream": True, "max_tokens": max_tokens, "ignore_eos": True, "seed": 1}
    started, times, text = time.perf_counter(), [], []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, **NO_THINK}, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                times.append(time.perf_counter())
                text.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
    return times[0] - started, times, "".join(text)


def conversations(url: str, clients: int, turns: int, user_tokens: int) -> list[list[float]]:
    """Each client's time to first token per turn, the clients taking turns."""
    # named by how many take turns: the one-client conversation, kept by the server, is not theirs
    talks = [[{"role": "system", "content": f"You are assistant {c} of {clients}."}] for c in range(clients)]
    ttfts: list[list[float]] = [[] for _ in range(clients)]
    for turn in range(turns):
        for c, messages in enumerate(talks):
            messages.append({"role": "user", "content": f"Client {c} turn {turn}:" + filler(user_tokens)})
            ttft, _, answer = stream(url, messages, 32)
            ttfts[c].append(ttft)
            messages.append({"role": "assistant", "content": answer})
    return ttfts


def overhead(server, tokens: int, runs: int) -> tuple[float, float]:
    """Decode tokens/s through the server and from the engine directly (best of `runs` each)."""
    engine = server.state.loaded.engine
    messages = [{"role": "user", "content": "Write a long story."}]
    options = server.state.defaults(False)
    direct_options = GenerateOptions(options.sampling, max_tokens=tokens, ignore_eos=True, seed=1)
    via, direct = [], []
    for _ in range(runs):
        _, times, _ = stream(server.url, messages, tokens)
        via.append((len(times) - 1) / (times[-1] - times[0]))
        engine.cache.reset()
        arrivals = []
        for _event in engine.stream(messages, direct_options, checkpoint=False):
            arrivals.append(time.perf_counter())
        direct.append((len(arrivals) - 2) / (arrivals[-2] - arrivals[0]))  # the last is Done
        engine.cache.reset()
    return max(via), max(direct)


def run_first_token(model: Path, url: str | None, reps: int) -> float:
    """The best wall time of `qwenlocal run` generating one token, through `url` or cold."""
    server = ["--server", url] if url else ["--no-server"]
    command = [sys.executable, "-m", "qwenlocal", "run", "-m", str(model), "--ctx", "4096", "--no-think"]
    command += ["--max-tokens", "1", *server, "hello"]
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return min(times)


def measure(name: str, model: Path, args, log) -> dict:
    with serving(model, ctx=32768, cache_mib=2048, threads=args.threads) as server:
        with loadavg.watch() as talks:
            log(f"{name}: through the server, {args.turns} turns, one client resending its history")
            one = conversations(server.url, 1, args.turns, args.turn_tokens)[0]
            log(f"{name}: two clients taking turns")
            two = conversations(server.url, 2, args.turns, args.turn_tokens)
        with loadavg.watch() as rest:
            log(f"{name}: decode through the server vs the engine directly")
            via, direct = overhead(server, 128, 3)
            stash = server.state.loaded.engine.cache.stash
            saved_mb = stash.bytes / 1e6 / max(len(stash.entries), 1)
            with serving(model, ctx=4096, threads=args.threads) as small:
                log(f"{name}: qwenlocal run, warm server vs cold")
                warm = run_first_token(model, small.url, 3)
            cold = run_first_token(model, None, 3)
    return dict(name=name, one=one, two=two, via=via, direct=direct, warm=warm, cold=cold, saved_mb=saved_mb,
                load=talks.mean, overhead_load=rest.mean)  # fmt: skip


def section(rows: list[dict], args) -> list[str]:
    turns = args.turns
    lines = [
        f"{HEADING} ({turns} turns through `qwenlocal serve`, a client resending the whole history with a "
        f"~{args.turn_tokens}-token message and a 32-token answer each turn; two clients: the same, taking turns):",
        "",
        "| model | "
        + " | ".join(f"turn {i + 1}" for i in range(turns))
        + f" | turn {turns} / turn 1 | {loadavg.HEADER} |",
        "|---|" + "---|" * (turns + 2),
    ]
    for r in rows:
        for label, ttfts in [
            ("", r["one"]),
            (", client A of 2", r["two"][0]),
            (", client B of 2", r["two"][1]),
        ]:
            ratio = ttfts[-1] / ttfts[0]
            cells = " | ".join(f"{t:.2f}s" for t in ttfts)
            mark = "✅" if ratio <= 1.5 else "❌"
            lines.append(
                f"| {r['name']}{label} | {cells} | {ratio:.2f} {mark} | {loadavg.cell(r.get('load'))} |"
            )
    lines.append("")
    for r in rows:
        loss = 1 - r["via"] / r["direct"]
        lines.append(
            f"Server overhead on {r['name']}: decode {r['via']:.2f} tok/s through the server vs "
            f"{r['direct']:.2f} direct: {loss * 100:.1f}% {'✅' if loss <= 0.03 else '❌'} (target <= 3%); "
            f"`qwenlocal run` to one token: {r['warm']:.2f}s with a warm server vs {r['cold']:.2f}s cold; "
            f"a kept conversation's state: {r['saved_mb']:.0f} MB (load average "
            f"{loadavg.cell(r.get('overhead_load'))})."
        )
    return lines + [""]


def splice(report: str, lines: list[str]) -> str:
    """`report` with its server section (heading, table, overhead lines) replaced, or appended."""
    return replace_section(report, HEADING, lines, CONTINUES)
