"""Speed at depth: prefill and decode with 16K and 64K tokens already in the context, next to
llama-bench's `-d`; the time to first token of a 32K-token document; the peak resident memory of
`qwenlocal run` with a 128K context. `python -m bench --only depth` measures these rows alone and
splices them into BENCHMARKS.md (after the agent table), as `--only agent` does.

Ours goes through the real path: the engine reads a prompt of `depth` tokens (not timed), decodes
`tg` tokens after it (decode at depth), then a second user message of `pp` tokens is added and
read on top of the reused state (prefill at depth: the tokens evaluated over the seconds taken).
llama-bench fills its context to the same depth before each of its tests.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.models.catalog import load

from . import filler, llama_bench, loadavg
from .report import replace_section

HEADING = "Speed at depth"
DEPTHS = (16384, 65536)
DOCUMENT = 32768
RSS_CTX = 131072
CONTINUES = ("|", "- ")  # the section's lines after its heading (report.replace_section)


@dataclass
class Depth:
    depth: int
    ours_pp: float = 0.0
    ours_tg: float = 0.0
    ref_pp: float = 0.0
    ref_tg: float = 0.0
    load: float = 0.0  # the 1-minute load average while it was measured (bench/loadavg.py)


@dataclass
class DepthResult:
    name: str
    depths: list[Depth] = field(default_factory=list)
    document_ttft: float = 0.0  # seconds to the first token of a DOCUMENT-token prompt
    document_tokens: int = 0
    document_load: float = 0.0
    peak_rss: int = 0
    rss_bound: int = 0


def llama_bench_at(binary: Path, model: Path, threads: int, pp: int, tg: int, depth: int, reps: int):
    """llama-bench's (prefill, decode) tok/s at `depth`: its best of `reps` repetitions."""
    out = subprocess.run(
        [str(binary), "-m", str(model), "-p", str(pp), "-n", str(tg), "-d", str(depth), "-t", str(threads),
         "-r", str(reps), "-o", "json", *llama_bench.same_buffers()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = json.loads(out.stdout)
    prefill = next(max(r["samples_ts"]) for r in rows if r["n_prompt"] > 0)
    decode = next(max(r["samples_ts"]) for r in rows if r["n_gen"] > 0)
    return prefill, decode


def ours_at(engine: LlamaEngine, options: GenerateOptions, prompt_of, depth: int, pp: int, reps: int):
    """(prefill, decode) tok/s at `depth` through the engine, each the best of `reps`."""
    prefills, decodes = [], []
    for _ in range(reps):
        engine.cache.reset()
        messages = prompt_of(engine, depth)
        done = list(engine.stream(messages, options))[-1]
        decodes.append(done.stats.generate_tps)
        messages += [
            {"role": "assistant", "content": done.answer},
            {"role": "user", "content": filler(pp)},
        ]
        done = list(engine.stream(messages, options))[-1]
        prefills.append(done.stats.prompt_tps)
    return max(prefills), max(decodes)


def document_ttft(
    engine: LlamaEngine, options: GenerateOptions, prompt_of, tokens: int = DOCUMENT
) -> tuple[float, int]:
    engine.cache.reset()
    messages = prompt_of(engine, tokens)
    done = list(engine.stream(messages, options, checkpoint=False))[-1]
    return done.stats.ttft_s, done.stats.prompt_tokens


def measure(name: str, path: Path, binary: Path, args, tools, spec_name: str, save) -> DepthResult:
    """All the depth rows of one model; `save(result)` after each, so a long run keeps its parts."""
    from qwenlocal.models.memory import kv_bytes

    log, peak_rss, prompt_of = tools
    spec = load().models[spec_name]
    result = DepthResult(name)
    options = GenerateOptions(spec.sampling(False), max_tokens=args.tg, ignore_eos=True, seed=1)
    first = GenerateOptions(spec.sampling(False), max_tokens=1, ignore_eos=True, seed=1)
    document = getattr(args, "document", DOCUMENT)  # `--quick` reads a shorter one
    size = max(*args.depths, document) + args.pp + 2 * args.tg + 1024
    log(f"{name}: peak RSS of `qwenlocal run --ctx {RSS_CTX}`")
    result.peak_rss = peak_rss(path, RSS_CTX)
    kv_and_state = kv_bytes(spec, RSS_CTX) + spec.recurrent_bytes
    result.rss_bound = path.stat().st_size + kv_and_state + 300_000_000
    save(result)
    with LlamaEngine(path, LoadOptions(n_ctx=size, n_threads=args.threads)) as engine:
        for depth in args.depths:
            row = Depth(depth)
            with loadavg.watch() as seen:
                log(f"{name}: depth {depth}: llama-bench -d {depth} (prefill {args.pp}, decode {args.tg})")
                row.ref_pp, row.ref_tg = llama_bench_at(
                    binary, path, args.threads, args.pp, args.tg, depth, args.reps
                )
                log(f"{name}: depth {depth}: qwenlocal")
                row.ours_pp, row.ours_tg = ours_at(engine, options, prompt_of, depth, args.pp, args.reps)
            row.load = seen.mean
            log(f"{name}: depth {depth}: prefill {row.ours_pp:.1f} vs {row.ref_pp:.1f}, "
                f"decode {row.ours_tg:.2f} vs {row.ref_tg:.2f} tok/s")  # fmt: skip
            result.depths.append(row)
            save(result)
            if depth == min(args.depths):
                log(f"{name}: time to first token of a {document}-token document")
                with loadavg.watch() as seen:
                    result.document_ttft, result.document_tokens = document_ttft(
                        engine, first, prompt_of, document
                    )
                result.document_load = seen.mean
                save(result)
    return result


def section(results: list[DepthResult], args, targets: dict) -> list[str]:
    """The depth table's lines, for BENCHMARKS.md."""
    lines = [
        f"{HEADING} (`{args.command}`: prefill of {args.pp} tokens and decode of {args.tg} with the context already "
        f"holding `depth` tokens, next to llama-bench `-d`; best of {args.reps} repetition(s) per side: each fills "
        "the context first, minutes on 2 cores):",
        "",
        "| model | depth | prefill tok/s qwenlocal / llama-bench | ratio | decode tok/s qwenlocal / llama-bench | ratio "
        f"| {loadavg.HEADER} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for d in r.depths:
            pp, tg = d.ours_pp / d.ref_pp, d.ours_tg / d.ref_tg
            lines.append(
                f"| {r.name} | {d.depth // 1024}K | {d.ours_pp:.1f} / {d.ref_pp:.1f} | {pp:.3f} "
                f"{'✅' if pp >= targets['prefill'] else '❌'} | {d.ours_tg:.2f} / {d.ref_tg:.2f} | {tg:.3f} "
                f"{'✅' if tg >= targets['decode'] else '❌'} | {loadavg.cell(d.load)} |"
            )
    lines.append("")
    for r in results:
        if r.document_ttft:
            lines.append(
                f"- {r.name}: time to first token of a {r.document_tokens:,}-token document: "
                f"{r.document_ttft:.1f} s ({r.document_tokens / r.document_ttft:.0f} tok/s; load average "
                f"{loadavg.cell(r.document_load)})."
            )
        if r.peak_rss:
            mark = "✅" if r.peak_rss <= r.rss_bound else "❌"
            lines.append(
                f"- {r.name}: peak RSS of `qwenlocal run --ctx {RSS_CTX}`: {r.peak_rss / 1e6:.0f} MB, bound "
                f"{r.rss_bound / 1e6:.0f} MB (file + KV cache + recurrent state + 300 MB) {mark}."
            )
    return lines + [""]


def splice(report: str, lines: list[str]) -> str:
    """`report` with its depth section replaced by `lines`, or them added at its end."""
    return replace_section(report, HEADING, lines, CONTINUES).rstrip("\n") + "\n"
