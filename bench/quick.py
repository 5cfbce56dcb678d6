"""`python -m bench --quick`: every section of the report, on the 0.8B shape, with few rounds, in
under 15 minutes on 2 cores (about 12 on a quiet machine, by the per-token times of a full run,
once the models and llama.cpp tools are built; see README.md, "Speed").

The main rows first (prefill and decode against llama-bench in 2 interleaved rounds, the 8-turn chat
best of 2, the agent's first 4 steps best of 3 runs, each followed by llama-bench), then each
`--only` section in turn, spliced into the report: images (2 samples a side), speed at 2K depth
with a 4K-token document, the server (4 turns), warm starts over a 4K-token file and conversation
(best of 2), and any section added since. An option given on the command line wins over these.
A section that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

MAIN = {"models": ["0.8b"], "reps": 2, "no_reuse_baseline": False, "steps": 4, "agent_runs": 3}
SECTIONS = {
    "image": {"image_reps": 2},
    "depth": {"depths": [2048], "reps": 1, "document": 4096},
    "serve": {"turns": 4},
    "warm": {"warm_tokens": 4096, "warm_samples": 2},
}


def _plain(parser: argparse.ArgumentParser) -> dict:
    """The options' values when none is given, as main() holds them."""
    plain = vars(parser.parse_args([]))
    plain["models"] = plain["models"].split(",")
    plain["depths"] = [int(d) for d in plain["depths"].split(",")]
    return plain


def defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """With `--quick`: its values for what the command line left at the default (and for the one
    section of `--only`, if any)."""
    plain = _plain(parser)
    args.given = {k for k, v in vars(args).items() if k in plain and v != plain[k]}
    if not args.quick:
        return
    for key, value in {**MAIN, **SECTIONS.get(args.only, {})}.items():
        if key not in args.given:
            setattr(args, key, value)


def sections(args: argparse.Namespace, runners: dict[str, Callable]) -> int:
    """Run every section (`--only NAME` as `runners[NAME]`) with its quick values; 1 if one failed."""
    failed = []
    for name, run in runners.items():
        section = argparse.Namespace(**vars(args))
        section.only = name
        for key, value in SECTIONS.get(name, {}).items():
            if key not in args.given:
                setattr(section, key, value)
        print(f"[bench] --quick: the {name} section", file=sys.stderr, flush=True)
        try:
            run(section)
        except Exception:  # the others still run; the failure is shown and the exit status says so
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"[bench] --quick: these sections failed: {', '.join(failed)}", file=sys.stderr, flush=True)
    return 1 if failed else 0
