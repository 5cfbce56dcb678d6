"""The structured-output row (`python -m bench --only schema`): decode speed with a JSON schema's
grammar against without, side by side in one run on the same loaded model (target >= 0.90x), and
the time to the answer's first token with and without it.

The model is the usual random-weight Q4_K_M of Qwen3.5-0.8B's shapes. Under the grammar its tokens
are checked one by one (llama.cpp's rejection sampling: the chain picks, the grammar checks that
token, and only a refused token makes the grammar run over the shortlist or the whole vocabulary).
A random model's picks are seldom JSON, so the schema's answer is mostly one long string (what a
real answer's tokens mostly are too): the row measures the cost per token where the grammar
mostly agrees, and the first token (the `{`, which a random model never picks) where it does not.
Rounds are interleaved, best against best (a shared machine only ever slows a run down).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.events import Done, TextDelta
from qwenlocal.models.catalog import load
from qwenlocal.structured import check

from . import filler, loadavg
from .report import replace_section, save

HEADING = "Structured output"
TARGET = 0.90
SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "total": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["summary", "total", "tags"],
}


def once(engine: LlamaEngine, messages: list[dict], options: GenerateOptions) -> tuple[float, float, int]:
    """(decode tok/s, seconds to the answer's first token, tokens) of one answer, the prompt read anew."""
    engine.cache.reset()
    started, first, done = time.perf_counter(), None, None
    for event in engine.stream(messages, options, checkpoint=False):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter() - started
        if isinstance(event, Done):
            done = event
    assert done is not None
    return done.stats.generate_tps, first if first is not None else float("nan"), len(done.tokens)


def measure(name: str, model: Path, args, log) -> dict:
    sampling = load().models["qwen3.5-0.8b"].sampling(False)
    plain = GenerateOptions(sampling, think=False, max_tokens=args.tg, seed=1)
    grammar = check(SCHEMA).grammar()
    messages = [{"role": "user", "content": "Summarize this as JSON:" + filler(args.schema_prompt)}]
    rows: dict[str, list] = {"plain": [], "schema": []}
    with LlamaEngine(model, LoadOptions(n_ctx=4096, n_threads=args.threads)) as engine:
        once(engine, messages, plain)  # warm-up: the context, the caches
        with loadavg.watch() as load_:
            for round_ in range(args.reps):
                for side, options in (("plain", plain), ("schema", replace(plain, grammar=grammar))):
                    options = replace(options, seed=round_ + 1)
                    rows[side].append(once(engine, messages, options))
                    tps, first, n = rows[side][-1]
                    log(
                        f"{name} round {round_ + 1}, {side}: {tps:.2f} tok/s, first answer token {first:.3f}s, {n} tokens"
                    )
    best = {side: (max(r[0] for r in runs), min(r[1] for r in runs)) for side, runs in rows.items()}
    return dict(name=name, tokens=args.tg, prompt=args.schema_prompt, reps=args.reps, samples=rows,
                plain_tps=best["plain"][0], schema_tps=best["schema"][0],
                plain_first=best["plain"][1], schema_first=best["schema"][1], load=load_.mean)  # fmt: skip


def section(rows: list[dict], args) -> list[str]:
    lines = [
        f"{HEADING} (`{args.command}`): decode with a JSON schema's grammar (`run --schema`, "
        f"`response_format`) against without, on one loaded model, {args.reps} interleaved rounds "
        f"of {args.tg} tokens after a ~{args.schema_prompt}-token prompt, best of each; the answer's first token "
        f"is timed from the start of the prompt (read anew each time):",
        "",
        f"| model | decode, plain | decode, with schema | with / plain | first answer token, plain "
        f"| first answer token, with schema | {loadavg.HEADER} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["schema_tps"] / r["plain_tps"]
        mark = "✅" if ratio >= TARGET else "❌"
        lines.append(
            f"| {r['name']} | {r['plain_tps']:.2f} tok/s | {r['schema_tps']:.2f} tok/s | {ratio:.3f}x {mark} "
            f"| {r['plain_first']:.3f}s | {r['schema_first']:.3f}s | {loadavg.cell(r.get('load'))} |"
        )
    lines += ["", f"Target: decode with a schema >= {TARGET:.2f}x without.", ""]
    return lines


def splice(report: str, lines: list[str]) -> str:
    return replace_section(report, HEADING, lines, ("|", "Target: decode with a schema")).rstrip("\n") + "\n"


def only(args, model_file, log) -> int:
    """`--only schema`: the row alone, spliced into the report and results.json."""
    args.schema_prompt = getattr(args, "schema_prompt", 256)
    rows = [measure(name, model_file(name), args, log) for name in args.models]
    lines = section(rows, args)
    save(args, splice, lines, schema=rows, schema_command=args.command)
    print("\n".join(lines))
    return 0
