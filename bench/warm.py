"""Warm starts (`python -m bench --only warm`): time to first token of a new process that restores
its prompt's beginning from the disk's state cache (warm) against one that reads it all (cold).

- `run`: a second question over a piped file of `--warm-tokens` tokens. Cold: the real CLI, in a
  child process, with XDG_CACHE_HOME a new empty folder (it reads the whole file, then keeps the
  file's state there); warm: the same command again on that folder (it restores the file, reads the
  question). The same prompt on both sides.
- `chat --resume` of a conversation of `--warm-tokens` tokens: cold resumes it with an empty cache
  (the whole conversation read again); warm is the next resume, on what the cold one kept (the
  conversation restored, the last answer and the new question read). The conversation file and the
  cache are put back after each warm sample, so every sample starts alike.
- The agent's step 1, through bench/agent.py's harness (the real loop, scripted calls) in this
  process, each side on a new engine: cold on an empty state folder, warm on what cold kept (the
  system prompt and tools). The task itself is read on both sides, so the check is on the restored
  part: restoring it (the warm engine's `StateCache.reuse` call, timed: finding, reading, checking
  and setting the state) against reading it (the cold run's progress when it had read that far).

The figures are the engine's own `ttft_s` (run/chat: from the CLI's `--json` stats): from the
start of the prompt, after the weights are loaded (`load_s`, not in it), to the first generated
token. It does include creating the context, which the first prompt of a `run` or `chat` process
does (and which `load_s` counts too), and finding, reading and checking the state file. The warm
side reads a file the cold process has just written: from the page cache, as a second question
soon after the first does. bench/restore.py measures reading against restoring prefix by prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qwenlocal.conversation import Conversation
from qwenlocal.engine import LlamaEngine, LoadOptions

from . import agent, loadavg, restore
from .report import replace_section

HEADING = "Warm starts"
WARM_SAMPLES = 3  # warm processes after each cold one (each cheap: its best is the figure)
AGENT_SAMPLES = 3  # cold and warm agent runs (step 1 only: seconds each), and prefix samples


def samples(args) -> int:
    return getattr(args, "warm_samples", AGENT_SAMPLES)  # `--quick` takes fewer


TARGET = 0.10  # warm at most a tenth of cold (for the agent: restoring at most a tenth of reading)
FLAGS = ["--max-tokens", "1", "--no-think", "--seed", "1", "--no-server", "--json"]
CONTINUES = ("|", "- ", restore.HEADING)  # the section's lines after its heading
QUESTION = "Which handler above returns the longest list? Answer with its name."
NEXT = "And which one returns the shortest? Answer with its name."


def child_env(root: Path, cache: Path, data: Path) -> dict:
    """The environment of a CLI child: its own cache (the state folder), data and an empty config
    (no user setting changes what is measured), offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWENLOCAL_")}
    env.update(XDG_CACHE_HOME=str(cache), XDG_DATA_HOME=str(data), XDG_CONFIG_HOME=str(root / "config"))
    env["HF_HUB_OFFLINE"] = "1"
    return env


def qwenlocal(command: list[str], env: dict, stdin: str) -> dict:
    """Run the real CLI; its `--json` stats (the last JSON object on stdout) and its wall time."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "qwenlocal", *command], input=stdin.encode(),
                         capture_output=True, env=env, timeout=3600)  # fmt: skip
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"qwenlocal {command[0]} exited {out.returncode}: {out.stderr.decode()[-2000:]}")
    stats = json.loads(out.stdout.decode().strip().splitlines()[-1])["stats"]
    keys = ("ttft_s", "load_s", "prompt_s", "prompt_tokens", "reused_tokens", "cached_tokens")
    return {k: stats[k] for k in keys} | {"wall_s": round(wall, 4)}


def states(folder: Path) -> set[Path]:
    return set((folder / "qwenlocal" / "states").glob("*.state"))


def texts(path: Path, n_tokens: int, threads: int) -> tuple[str, list[dict]]:
    """A source file of about n_tokens tokens, and a conversation of about as many in all
    (modules shown and answered), counted with the model's own tokenizer and template."""
    with LlamaEngine(path, LoadOptions(n_ctx=n_tokens + 4096, n_threads=threads)) as engine:
        count = lambda text: len(engine.tokenize(text))  # noqa: E731
        document = agent.module_text(0, n_tokens, count)
        messages: list[dict] = []
        for i in range(1, 1000):
            left = n_tokens - len(engine.prompt_tokens(messages or [{"role": "user", "content": ""}], False))
            if left < 64:
                break
            code = agent.module_text(i, min(1500, left - 48), count)
            messages.append({"role": "user", "content": f"{code}\nWhat do these handlers do?"})
            messages.append({"role": "assistant", "content": f"Module {i}'s handlers return a slice of the "
                             "request's items up to their limit, with the module's number appended."})  # fmt: skip
    return document, messages


def cli_rows(path: Path, args, work: Path, document: str, messages: list[dict]) -> dict:
    """The `run` and `chat --resume` rows: cold and warm samples of each, with their load."""
    ctx = -(-(args.warm_tokens + 4096) // 1024) * 1024
    common = ["-m", str(path), "--ctx", str(ctx), "--threads", str(args.threads), *FLAGS]
    rows = {}
    with loadavg.watch() as seen:
        cold, warm = [], []
        for i in range(args.warm_reps):
            env = child_env(work, work / f"run-{i}", work / f"run-{i}-data")
            cold.append(qwenlocal(["run", *common, QUESTION], env, document))
            warm += [qwenlocal(["run", *common, QUESTION], env, document) for _ in range(WARM_SAMPLES)]
    rows["run"] = {"cold": cold, "warm": warm, "load": seen.mean, "loads": seen.samples}
    with loadavg.watch() as seen:
        cold, warm = [], []
        for i in range(args.warm_reps):
            cache, data = work / f"chat-{i}", work / f"chat-{i}-data"
            saved = data / "qwenlocal" / "conversations" / "bench.json"
            Conversation(id="bench", title="bench", messages=messages).save(saved)
            env = child_env(work, cache, data)
            cold.append(qwenlocal(["chat", "--resume", *common], env, QUESTION + "\n"))
            after, kept = saved.read_bytes(), states(cache)
            for _ in range(WARM_SAMPLES):
                warm.append(qwenlocal(["chat", "--resume", *common], env, NEXT + "\n"))
                saved.write_bytes(after)  # the next sample resumes the same conversation
                for new in states(cache) - kept:  # and restores what the cold process kept
                    new.unlink()
    rows["chat"] = {"cold": cold, "warm": warm, "load": seen.mean, "loads": seen.samples}
    return rows


def agent_row(path: Path, args, work: Path, sampling) -> dict:
    """Step 1 of the agent, cold and warm, each on a new engine (as a new process would load)."""
    cold, warm, restoring = [], [], []
    with loadavg.watch() as seen:
        for i in range(samples(args)):
            folder = work / f"agent-{i}"
            options = LoadOptions(
                n_ctx=8192, n_threads=args.threads, state_dir=str(folder), state_max=1 << 34
            )
            for side in (cold, warm):  # in one project folder: the system prompt names it
                with LlamaEngine(path, options) as engine:
                    if side is warm:
                        timed_reuse(engine.cache, restoring)
                    side.append(agent.agent_steps(engine, sampling, 1, args.turn_tokens, work / "project"))
    restored = warm[0].stats[0].cached_tokens
    return {
        "cold": [step_of(run) for run in cold],
        "warm": [step_of(run) for run in warm],
        "restored": restored,
        "reading": [read_at(run.progress[0], restored) for run in cold],  # the cold run, that far
        "restoring": restoring,
        "load": seen.mean,
        "loads": seen.samples,
    }


def timed_reuse(cache, spent: list[float]) -> None:
    """Time this context's `StateCache.reuse` calls (finding, reading, checking and setting the
    stored state): appended to `spent`."""
    reuse = cache.reuse

    def timed(tokens: list[int]) -> int:
        started = time.perf_counter()
        n = reuse(tokens)
        spent.append(time.perf_counter() - started)
        return n

    cache.reuse = timed


def step_of(run: agent.AgentRun) -> dict:
    stats = run.stats[0]
    return {"ttft_s": run.ttfts[0], "engine_ttft_s": stats.ttft_s, "prompt_tokens": stats.prompt_tokens,
            "reused_tokens": stats.reused_tokens, "cached_tokens": stats.cached_tokens}  # fmt: skip


def read_at(progress: list[tuple[int, float]], n: int) -> float:
    """Seconds the prompt took to read its first n tokens (progress is reported per batch, and the
    engine stops a batch where it keeps a state, so n is one of them)."""
    done, seconds = next((d, s) for d, s in progress if d >= n)
    return seconds * n / done


def measure(name: str, path: Path, args, log, sampling) -> dict:
    work = Path(tempfile.mkdtemp(prefix="qwenlocal-bench-warm-", dir=restore.scratch()))
    try:
        log(f"{name}: warm starts: writing a {args.warm_tokens}-token file and conversation")
        document, messages = texts(path, args.warm_tokens, args.threads)
        log(f"{name}: warm starts: agent step 1, cold and warm, best of {samples(args)}")
        row = {"name": name, "agent": agent_row(path, args, work, sampling)}
        log(
            f"{name}: warm starts: `run` and `chat --resume`, {args.warm_reps} cold, {WARM_SAMPLES} warm after each"
        )
        row |= cli_rows(path, args, work, document, messages)
        if name == args.models[0]:
            log(f"{name}: restoring against reading prefixes of {', '.join(map(str, restore.SIZES))} tokens")
            row["prefixes"] = restore.measure(path, args.threads, work / "prefixes", samples(args))
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cell(samples: list[dict], key: str = "ttft_s") -> float:
    return min(s[key] for s in samples)


def section(rows: list[dict], args) -> list[str]:
    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    lines = [
        f"{HEADING} (`{args.command}`): time to first token of a new process that restores the beginning of its "
        "prompt from the disk's state cache (warm), against one that reads it all (cold, an empty cache). `run` and "
        "`chat` are the real CLI in child processes, timed by their own `--json` stats (`ttft_s`: from the start of "
        "the prompt to the first generated token, after the weights are loaded; it includes creating the context "
        "and restoring the state); the agent's step 1 is the real loop (bench/agent.py, timed from the loop's start "
        "of the step), on a new engine per side. "
        f"Each figure is its best: {args.warm_reps} cold sample(s), {WARM_SAMPLES} warm after each (the agent: "
        f"{samples(args)} each). Target: warm at most {TARGET:.0%} of cold; for the agent, whose task is read "
        "on both sides, restoring the stored part (its `StateCache.reuse` call, timed) at most that of reading it "
        "(the cold run's progress when it had read that far):",
        "",
        f"| model | measure | cold | warm | tokens read cold / warm (restored) | warm / cold | process wall cold / warm "
        f"| {loadavg.HEADER} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["agent"]
        cold, warm = _cell(a["cold"]), _cell(a["warm"])
        c, w = a["cold"][0], a["warm"][0]
        lines.append(f"| {r['name']} | agent step 1 | {cold:.2f}s | {warm:.2f}s | {_tokens(c, w)} | "
                     f"{warm / cold:.3f} | | {loadavg.cell(a['load'])} |")  # fmt: skip
        reading, restoring = min(a["reading"]), min(a["restoring"])
        ratio = restoring / reading
        lines.append(f"| {r['name']} | agent step 1: its {a['restored']:,} stored tokens, read vs restored | "
                     f"{reading:.2f}s | {restoring:.3f}s | | {ratio:.3f} {ok(ratio <= TARGET)} | | |")  # fmt: skip
        for key, what in (("run", f"`run`: a second question over a {args.warm_tokens:,}-token piped file"),
                          ("chat", f"`chat --resume` of a {args.warm_tokens:,}-token conversation")):  # fmt: skip
            row = r[key]
            cold, warm = _cell(row["cold"]), _cell(row["warm"])
            walls = f"{_cell(row['cold'], 'wall_s'):.1f}s / {_cell(row['warm'], 'wall_s'):.1f}s"
            ratio = warm / cold
            lines.append(f"| {r['name']} | {what} | {cold:.2f}s | {warm:.2f}s | {_tokens(row['cold'][0], row['warm'][0])} "
                         f"| {ratio:.3f} {ok(ratio <= TARGET)} | {walls} | {loadavg.cell(row['load'])} |")  # fmt: skip
    lines.append("")
    prefixes = next((r for r in rows if r.get("prefixes")), None)
    if prefixes:
        lines += restore.section(prefixes["name"], prefixes["prefixes"])
    loads = [x for r in rows for x in (r["agent"]["load"], r["run"]["load"], r["chat"]["load"])]
    lines += [f"- {loadavg.note(loads)}", ""]
    return lines


def _tokens(cold: dict, warm: dict) -> str:
    read = lambda s: s["prompt_tokens"] - s["reused_tokens"]  # noqa: E731
    return f"{read(cold):,} / {read(warm):,} ({warm['cached_tokens']:,})"


def splice(report: str, lines: list[str]) -> str:
    """`report` with its warm-start section replaced by `lines`, or them added at its end."""
    return replace_section(report, HEADING, lines, CONTINUES).rstrip("\n") + "\n"
