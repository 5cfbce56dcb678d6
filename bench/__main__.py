"""qwenlocal's speed next to llama.cpp's own llama-bench, measured side by side in one run.

    python -m bench                    # 0.8B and 2B shapes, 8 interleaved rounds
    python -m bench --models tiny      # a smoke run on a tiny model (what CI does)
    python -m bench --only agent --models 0.8b   # the agent row alone, spliced into the report
    python -m bench --only image       # the image rows alone (against llama-mtmd-cli), spliced in
    python -m bench --only depth --models 0.8b --reps 1   # speed at 16K/64K depth, 32K TTFT, 128K RSS
    python -m bench --only serve --models 0.8b   # the server rows alone (bench/serve.py), likewise
    python -m bench --only warm        # warm starts: cold vs restored from disk (bench/warm.py)
    python -m bench --only schema --reps 3   # decode with a JSON schema vs without (bench/schema.py)
    python -m bench --quick            # every section on the 0.8B shape, few rounds (bench/quick.py)

Models: random weights with Qwen3.5's exact tensor shapes and vocabulary, quantized to Q4_K_M
(compute per token does not depend on the values, so the speed is the real models' speed).
llama-bench is built from the llama.cpp sources the installed llama-cpp-python vendors. Results
are ratios from the same run, written to BENCHMARKS.md with a chart (bench/multiturn.png) and
every sample (bench/results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.models.catalog import load
from qwenlocal.testing import ggufs

from . import agent, depth, filler, llama_bench, loadavg, quick, vision
from .report import carry
from .report import save as save_section

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"0.8b": ggufs.QWEN35_0_8B, "2b": ggufs.QWEN35_2B, "tiny": ggufs.Shape()}
SPEC = {"0.8b": "qwen3.5-0.8b", "2b": "qwen3.5-2b", "tiny": "qwen3.5-0.8b"}
SAMPLES = 2  # timed runs per side in each round (llama-bench: -r 2, after its warm-up)
TARGETS = {"decode": 0.97, "prefill": 0.95, "turn8": 1.5, "agent": 1.5, "help_s": 0.3, "rss_extra_mb": 300,
           "image": 0.95, "follow_up": 1.2}  # fmt: skip


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def model_file(name: str) -> Path:
    path = llama_bench.cache_dir() / "models" / f"qwen35-{name}-shape-q4_k_m.gguf"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    f16 = path.with_suffix(".f16.gguf")
    log(f"writing a random-weight GGUF with Qwen3.5-{name}'s shapes, then quantizing it to Q4_K_M")
    ggufs.write_random(f16, SHAPES[name], f16=True)
    part = path.with_suffix(".part")  # renamed when complete: an interrupted run is not reused
    ggufs.quantize(f16, part, "Q4_K_M", threads=os.cpu_count() or 2)
    f16.unlink()
    part.rename(path)
    return path


def prompt_of(engine: LlamaEngine, n_tokens: int) -> list[dict]:
    """A user message whose rendered prompt is exactly n_tokens."""
    overhead = len(engine.prompt_tokens([{"role": "user", "content": filler(1)}], False)) - 1
    messages = [{"role": "user", "content": filler(n_tokens - overhead)}]
    assert len(engine.prompt_tokens(messages, False)) == n_tokens
    return messages


@dataclass
class Result:
    name: str
    file_bytes: int
    ours_pp: list[float] = field(default_factory=list)
    ours_tg: list[float] = field(default_factory=list)
    ref_pp: list[float] = field(default_factory=list)
    ref_tg: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    turns: list[float] = field(default_factory=list)
    turns_no_reuse: list[float] = field(default_factory=list)
    agent_steps: list[float] = field(default_factory=list)  # time to first token of each agent step
    agent_evaluated: list[tuple] = field(default_factory=list)  # (tokens evaluated, depth) per step
    agent_reference: list[float] = field(default_factory=list)  # llama-bench: step 1's, the last's (s)
    agent_runs_s: list[list[float]] = field(default_factory=list)  # every agent run's step times
    agent_reference_runs: list[list[float]] = field(default_factory=list)  # every llama-bench sample (s)
    load: float = 0.0  # the 1-minute load average while its rows were measured (bench/loadavg.py)
    turns_load: float = 0.0
    agent_load: float = 0.0
    peak_rss: int = 0
    rss_bound: int = 0  # the target: file + KV cache + recurrent state + 300 MB

    @staticmethod
    def ratio(ours: list[float], ref: list[float]) -> float:
        """Best against best. Other tenants of a shared machine only ever slow a run down, so each
        side's fastest repetition is the best estimate of its own speed (the rule timeit follows)."""
        return max(ours) / max(ref)

    @staticmethod
    def paired(ours: list[float], ref: list[float]) -> float:
        """The median over rounds of ours / llama-bench's neighbouring run: a second, cross-check."""
        return statistics.median(o / r for o, r in zip(ours, ref, strict=True))


def run_llama_bench(
    binary: Path, model: Path, threads: int, prompt: int, gen: int, depth: int = 0, reps: int = SAMPLES
) -> list[float]:
    """tok/s of each of `reps` repetitions of one llama-bench test: `prompt` tokens of prefill, or
    `gen` tokens of decode after `depth` tokens already in the context (not timed)."""
    out = subprocess.run(
        [str(binary), "-m", str(model), "-p", str(prompt), "-n", str(gen), "-d", str(depth), "-t", str(threads),
         "-r", str(reps), "-o", "json", *llama_bench.same_buffers()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (row,) = json.loads(out.stdout)
    return row["samples_ts"]


def run_ours(
    engine: LlamaEngine, options: GenerateOptions, messages: list[dict]
) -> tuple[float, float, float]:
    engine.cache.reset()  # a cold prompt, as llama-bench's
    done = list(engine.stream(messages, options, checkpoint=False))[-1]  # as `qwenlocal run` does
    return done.stats.prompt_tps, done.stats.generate_tps, done.stats.ttft_s


def multi_turn(engine: LlamaEngine, turns: int, user_tokens: int, reuse: bool) -> list[float]:
    options = GenerateOptions(
        load().models["qwen3.5-0.8b"].sampling(False), max_tokens=32, ignore_eos=True, seed=1
    )
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    engine.cache.reset()
    ttfts = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Turn {turn}:" + filler(user_tokens)})
        if not reuse:
            engine.cache.reset()
        done = list(engine.stream(messages, options))[-1]
        ttfts.append(done.stats.ttft_s)
        messages.append({"role": "assistant", "content": done.answer})
    return ttfts


def peak_rss(model: Path, n_ctx: int) -> int:
    """Peak resident memory of a whole `qwenlocal run` (bytes). A small helper process starts it:
    a child forked straight from this (large) process would count this process's pages too."""
    helper = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(os.wait4(p.pid, 0)[2].ru_maxrss)"
    )
    command = [sys.executable, "-m", "qwenlocal", "run", "-m", str(model), "--ctx", str(n_ctx), "--max-tokens",
               "32", "--no-think", filler(400)]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", helper, *command], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) * 1024


def cold_start(model: Path, reps: int) -> tuple[float, float]:
    exe = Path(sys.executable).with_name("qwenlocal")
    helps, firsts = [], []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([str(exe), "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - started)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(exe), "run", "-m", str(model), "--ctx", "2048", "--no-think", "--max-tokens", "4", "hi"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        proc.stdout.read(1)
        firsts.append(time.perf_counter() - started)
        proc.wait()
    return statistics.median(helps), statistics.median(firsts)


def machine() -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    import psutil

    from qwenlocal.engine import amx_kernels_off

    off = amx_kernels_off()
    return {
        "cpu": cpu,
        "cores": f"{psutil.cpu_count(logical=False)} physical / {psutil.cpu_count()} logical",
        "ram": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "llama-cpp-python": metadata.version("llama-cpp-python"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **(
            {"weight buffers": f"plain on both sides ({off}; llama.cpp tools run with --repack 0)"}
            if off
            else {}
        ),
    }


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def bench_model(name: str, binary: Path, args) -> Result:
    path = model_file(name)
    result = Result(name, path.stat().st_size)
    threads = args.threads
    # the context llama-bench uses (prompt + generated tokens), so both do the same work per token
    with LlamaEngine(path, LoadOptions(n_ctx=args.pp + args.tg, n_threads=threads)) as engine:
        messages = prompt_of(engine, args.pp)
        sampling = load().models[SPEC[name]].sampling(False)
        options = GenerateOptions(sampling, max_tokens=args.tg, ignore_eos=True, seed=1)
        # llama-bench warms up before each test (the whole prompt, one decode step): so does ours
        warm_up = replace(options, max_tokens=2)
        prefill = lambda: result.ref_pp.extend(run_llama_bench(binary, path, threads, args.pp, 0))  # noqa: E731
        # llama-bench decodes after `pp` tokens of context, as qwenlocal does after its prompt
        decode = lambda: result.ref_tg.extend(run_llama_bench(binary, path, threads, 0, args.tg, args.pp))  # noqa: E731
        rounds = loadavg.watch().start()
        for rnd in range(args.reps):
            # interleaved, ours between llama-bench's two tests, whose order alternates: drift on a
            # shared machine hits both sides alike, and each round gives neighbouring runs to pair
            (prefill if rnd % 2 == 0 else decode)()
            run_ours(engine, warm_up, messages)
            for _ in range(SAMPLES):
                pp, tg, ttft = run_ours(engine, options, messages)
                result.ours_pp.append(pp)
                result.ours_tg.append(tg)
                result.ttft.append(ttft)
            (decode if rnd % 2 == 0 else prefill)()
            new = slice(-SAMPLES, None)
            log(
                f"{name}: round {rnd + 1}/{args.reps}: prefill {_fmt(result.ours_pp[new])} vs "
                f"{_fmt(result.ref_pp[new])}, decode {_fmt(result.ours_tg[new])} vs {_fmt(result.ref_tg[new])} tok/s"
            )
        result.load = rounds.stop().mean
    with LlamaEngine(path, LoadOptions(n_ctx=32768, n_threads=threads)) as engine:  # a chat's context
        log(f"{name}: multi-turn time to first token, {args.turns} turns, best of {SAMPLES} conversations")
        with loadavg.watch() as seen:
            runs = [multi_turn(engine, args.turns, args.turn_tokens, reuse=True) for _ in range(SAMPLES)]
        result.turns_load = seen.mean
        result.turns = [min(turn) for turn in zip(*runs, strict=True)]
        if args.no_reuse_baseline and name == args.models[0]:
            log(f"{name}: the same without state reuse (what llama-cpp-python's chat does), once")
            result.turns_no_reuse = multi_turn(engine, args.turns, args.turn_tokens, reuse=False)
        bench_agent(engine, name, result, args, binary, path)
    spec = load().models[SPEC[name]]
    n_ctx = 4096
    result.peak_rss = peak_rss(path, n_ctx)
    kv_and_state = spec.kv_bytes_per_token * n_ctx + spec.recurrent_bytes
    result.rss_bound = result.file_bytes + kv_and_state + TARGETS["rss_extra_mb"] * 1_000_000
    return result


def bench_agent(engine: LlamaEngine, name: str, result: Result, args, binary: Path, path: Path) -> None:
    log(f"{name}: agent time to first token, {args.steps} steps, best of {args.agent_runs} runs, each followed "
        "by llama-bench for the first and last steps' tokens at their depths")  # fmt: skip
    sampling = load().models[SPEC[name]].sampling(False)
    samples: list[list[float]] = [[], []]

    def reference(evaluated: list[tuple[int, int]]) -> None:  # interleaved with the runs
        for i, (tokens, at) in enumerate((evaluated[0], evaluated[-1])):
            samples[i].append(
                tokens / max(run_llama_bench(binary, path, args.threads, tokens, 0, at, reps=1))
            )
        log(f"{name}: llama-bench: {samples[0][-1]:.2f}s, {samples[1][-1]:.2f}s")

    with loadavg.watch() as seen:
        result.agent_steps, result.agent_evaluated, result.agent_runs_s = agent.best_steps(
            engine, sampling, args.agent_runs, args.steps, args.turn_tokens, between=reference
        )
    result.agent_reference = [min(s) for s in samples]
    result.agent_reference_runs, result.agent_load = samples, seen.mean


def only_agent(args) -> int:
    """`--only agent`: measure the agent row alone, splice it into the report (or write it alone
    where there is none) and into results.json, keeping the rest of a full run's numbers."""
    results, binary = [], llama_bench.build()
    for name in args.models:
        result = Result(name, model_file(name).stat().st_size)
        with LlamaEngine(model_file(name), LoadOptions(n_ctx=32768, n_threads=args.threads)) as engine:
            bench_agent(engine, name, result, args, binary, model_file(name))
        results.append(result)
    lines = agent.section(results, args, TARGETS["agent"], TARGETS["prefill"])
    args.out.write_text(agent.splice(args.out.read_text() if args.out.exists() else "", lines).lstrip("\n"))
    path = args.out.parent / "bench" / "results.json"
    path.parent.mkdir(exist_ok=True)
    samples = json.loads(path.read_text()) if path.exists() else {"models": []}
    known = {m["name"]: m for m in samples["models"]}
    for r in results:
        if r.name in known:
            known[r.name]["agent_steps"] = r.agent_steps
            known[r.name]["agent_evaluated"] = r.agent_evaluated
            known[r.name]["agent_reference"] = r.agent_reference
            known[r.name]["agent_runs_s"] = r.agent_runs_s
            known[r.name]["agent_reference_runs"] = r.agent_reference_runs
            known[r.name]["agent_load"] = r.agent_load
        else:
            samples["models"].append(asdict(r))
    samples["agent_command"] = args.command
    path.write_text(json.dumps(samples, indent=1) + "\n")
    print("\n".join(lines))
    return 0


def only_image(args) -> int:
    """`--only image`: the image rows alone, against llama-mtmd-cli, spliced into the report and
    results.json (keeping the rest of a full run's numbers)."""
    row = vision.measure(args)
    lines = vision.section(row, args.command, TARGETS)
    save_section(args, vision.splice, lines, image=row | {"command": args.command})
    print("\n".join(lines))


def only_depth(args) -> int:
    """`--only depth`: the depth rows (bench/depth.py), spliced into the report after each part is
    measured (a run of an hour keeps what it has), and into results.json."""
    binary = llama_bench.build()
    done: dict[str, depth.DepthResult] = {}

    def save(result: depth.DepthResult) -> None:
        done[result.name] = result
        lines = depth.section(list(done.values()), args, TARGETS)
        rows = [asdict(r) for r in done.values()]
        save_section(args, depth.splice, lines, depth=rows, depth_command=args.command)

    for name in args.models:
        depth.measure(name, model_file(name), binary, args, (log, peak_rss, prompt_of), SPEC[name], save)
    print("\n".join(depth.section(list(done.values()), args, TARGETS)))


def only_serve(args) -> int:
    """`--only serve`: the server rows (bench/serve.py), spliced into the report and results.json."""
    from . import serve

    rows = [serve.measure(name, model_file(name), args, log) for name in args.models]
    lines = serve.section(rows, args)
    save_section(args, serve.splice, lines, serve=rows, serve_command=args.command)
    print("\n".join(lines))
    return 0


def only_warm(args) -> int:
    """`--only warm`: warm starts (bench/warm.py), cold against restored from disk, spliced into the
    report after each model (a long run keeps what it has) and into results.json."""
    from . import warm

    rows = []
    for name in args.models:
        sampling = load().models[SPEC[name]].sampling(False)
        rows.append(warm.measure(name, model_file(name), args, log, sampling))
        save_section(args, warm.splice, warm.section(rows, args), warm=rows, warm_command=args.command)
    print("\n".join(warm.section(rows, args)))
    return 0


def only_schema(args) -> int:
    """`--only schema`: decode with a JSON schema's grammar vs without (bench/schema.py)."""
    from . import schema

    return schema.only(args, model_file, log)


def chart(results: list[Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        left.plot(range(1, len(r.turns) + 1), r.turns, marker="o", label=f"{r.name}: qwenlocal")
        if r.turns_no_reuse:
            left.plot(
                range(1, len(r.turns_no_reuse) + 1),
                r.turns_no_reuse,
                marker="x",
                linestyle="--",
                label=f"{r.name}: without state reuse",
            )
    left.set(xlabel="turn", ylabel="time to first token (s)", title="Multi-turn chat")
    left.legend()
    labels, ours, refs = [], [], []
    for r in results:
        for kind, o, f in (("prefill", r.ours_pp, r.ref_pp), ("decode", r.ours_tg, r.ref_tg)):
            labels.append(f"{r.name}\n{kind}")
            ours.append(max(o))
            refs.append(max(f))
    x = range(len(labels))
    right.bar([i - 0.2 for i in x], refs, 0.4, label="llama-bench")
    right.bar([i + 0.2 for i in x], ours, 0.4, label="qwenlocal")
    right.set_xticks(list(x), labels)
    right.set(ylabel="tokens/s", title="Throughput, same llama.cpp")
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def report(results: list[Result], info: dict, help_s: float, first_s: float, args) -> str:
    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{args.command}` on {info['date']}. Every number comes from the same run.",
        "",
        "qwenlocal's engine and llama.cpp's own `llama-bench`, built from the llama.cpp sources that the",
        f"installed llama-cpp-python {info['llama-cpp-python']} vendors and configured as llama-cpp-python",
        f"builds them, ran interleaved: {args.reps} rounds of {SAMPLES} timed runs each, after a warm-up, "
        f"{args.threads} threads, the same context size. Prefill",
        f"is a {args.pp}-token prompt from an empty context; decode is {args.tg} tokens after it (llama-bench",
        f"`-d {args.pp}`), with the model cards' sampling for qwenlocal (llama-bench does not sample). Models:",
        "random weights with Qwen3.5's exact tensor shapes and 248,320-token vocabulary, quantized to Q4_K_M;",
        "speed per token does not depend on the weights' values.",
        "",
        "These machines are shared and noisy (llama-bench alone varies by ±10% from run to run): read the",
        "ratios, not the absolute speeds. tok/s is each side's fastest run (other tenants only ever slow",
        "a run down, so the fastest run is the best estimate of a program's own speed, as timeit",
        "reasons); the ratio of these is checked against the target. As a cross-check, *paired* is the",
        "median of qwenlocal's speed over llama-bench's in the same round. Every sample is in",
        "`bench/results.json`. Beside every row, the 1-minute load average while it was measured (the bench's",
        "own threads count in it): a row measured above the core count says so, and is kept as measured.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "date"),
        "",
        "| model (file) | prefill tok/s qwenlocal / llama-bench | ratio | paired | decode tok/s qwenlocal / "
        f"llama-bench | ratio | paired | TTFT (pp{args.pp}) | peak RSS / bound | {loadavg.HEADER} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pp, tg = r.ratio(r.ours_pp, r.ref_pp), r.ratio(r.ours_tg, r.ref_tg)
        lines.append(
            f"| {r.name} ({r.file_bytes / 1e6:.0f} MB) | {max(r.ours_pp):.1f} / {max(r.ref_pp):.1f} | "
            f"{pp:.3f} {ok(pp >= TARGETS['prefill'])} | {r.paired(r.ours_pp, r.ref_pp):.3f} | "
            f"{max(r.ours_tg):.2f} / {max(r.ref_tg):.2f} | {tg:.3f} {ok(tg >= TARGETS['decode'])} | "
            f"{r.paired(r.ours_tg, r.ref_tg):.3f} | {statistics.median(r.ttft):.2f}s | "
            f"{r.peak_rss / 1e6:.0f} MB / {r.rss_bound / 1e6:.0f} MB {ok(r.peak_rss <= r.rss_bound)} | "
            f"{loadavg.cell(r.load)} |"
        )
    lines += [
        "",
        f"Multi-turn time to first token ({args.turns} turns, each adding a ~{args.turn_tokens}-token "
        f"message and a 32-token answer; each turn's best of {SAMPLES} conversations, the baseline once):",
        "",
        "| model | "
        + " | ".join(f"turn {i + 1}" for i in range(args.turns))
        + f" | turn {args.turns} / turn 1 | {loadavg.HEADER} |",
        "|---|" + "---|" * (args.turns + 2),
    ]
    for r in results:
        ratio = r.turns[-1] / r.turns[0]
        lines.append(
            f"| {r.name} | "
            + " | ".join(f"{t:.2f}s" for t in r.turns)
            + f" | {ratio:.2f} {ok(ratio <= TARGETS['turn8'])} | {loadavg.cell(r.turns_load)} |"
        )
        if r.turns_no_reuse:
            ratio = r.turns_no_reuse[-1] / r.turns_no_reuse[0]
            lines.append(
                f"| {r.name}, no state reuse | "
                + " | ".join(f"{t:.2f}s" for t in r.turns_no_reuse)
                + f" | {ratio:.2f} | {loadavg.cell(r.turns_load)} |"
            )
    lines += ["", *agent.section(results, args, TARGETS["agent"], TARGETS["prefill"])]
    lines += [
        f"Cold start: `qwenlocal --help` {help_s:.3f}s {ok(help_s < TARGETS['help_s'])} (target < 0.3 s); "
        f"`qwenlocal run` to its first token on {results[0].name}: {first_s:.2f}s.",
        "",
        "Targets: decode >= 0.97x llama-bench, prefill >= 0.95x, time to first token at turn 8 <= 1.5x turn 1 "
        f"and at agent step {args.steps} <= 1.5x step 1 (and >= 0.95x llama.cpp's speed for its tokens at its depth), "
        "`--help` under 0.3 s, peak RSS at most file + KV cache (4K context) + recurrent state + 300 MB.",
        "",
        "![multi-turn time to first token and throughput](bench/multiturn.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="0.8b,2b", help="comma-separated: 0.8b, 2b, tiny")
    parser.add_argument("--reps", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--turn-tokens", type=int, default=600)
    parser.add_argument("--no-reuse-baseline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--steps", type=int, default=10, help="agent steps")
    parser.add_argument("--agent-runs", type=int, default=3, help="agent runs (each step's best)")
    only = parser.add_argument(
        "--only",
        choices=["agent", "image", "depth", "serve", "warm", "schema"],
        help="measure these rows alone",
    )
    parser.add_argument("--image-tokens", type=int, default=256, help="image token budget (image rows)")
    parser.add_argument("--image-reps", type=int, default=5, help="interleaved samples (image rows)")
    parser.add_argument("--depths", default="16384,65536", help="--only depth: tokens already in the context")
    parser.add_argument(
        "--warm-tokens", type=int, default=16384, help="--only warm: the piped file's and chat's tokens"
    )
    parser.add_argument(
        "--warm-reps", type=int, default=1, help="--only warm: cold samples of those (minutes each)"
    )
    parser.add_argument("--quick", action="store_true", help="every section on the 0.8B shape, few rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    args.models = args.models.split(",")
    args.depths = [int(d) for d in args.depths.split(",")]
    quick.defaults(args, parser)
    if args.threads is None:
        from qwenlocal.models.hardware import detect

        args.threads = detect(gpu_offload=False).cpu_threads
    if args.only == "agent":
        return only_agent(args)
    if args.only == "image":
        return only_image(args)
    if args.only == "depth":
        return only_depth(args)
    if args.only == "serve":
        return only_serve(args)
    if args.only == "warm":
        return only_warm(args)
    if args.only == "schema":
        return only_schema(args)
    binary = llama_bench.build()
    results = [bench_model(name, binary, args) for name in args.models]
    help_s, first_s = cold_start(model_file(args.models[0]), 5)
    info = machine()
    (args.out.parent / "bench").mkdir(exist_ok=True)
    chart(results, args.out.parent / "bench" / "multiturn.png")
    samples = {"machine": info, "command": args.command, "models": [asdict(r) for r in results]}
    (args.out.parent / "bench" / "results.json").write_text(json.dumps(samples, indent=1) + "\n")
    text = report(results, info, help_s, first_s, args)
    image_rows = vision.kept(args.out.read_text()) if args.out.exists() else None
    if image_rows:
        text = vision.splice(text, image_rows)
    if args.out.exists():  # the sections only `--only` modes measure are kept as they were
        from . import serve, warm

        text = carry(args.out.read_text(), text, [(m.HEADING, m.CONTINUES) for m in (depth, serve, warm)])
    args.out.write_text(text)
    print(text)
    if args.quick:  # every other section, measured after the main rows and spliced in
        return quick.sections(
            args, {name: globals()[f"only_{name}"] for name in only.choices if name != "agent"}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
