"""The agent row: time to first token at step 10 of an agent run over step 1 (target <= 1.5).

The real agent loop (qwenlocal.agent.loop.Agent, its tools on a scratch project, its context
budget) runs on the real engine with the shape-faithful model. Random weights cannot write tool
calls, so the engine generates each reply as usual (the compute of a real step) and the reply is
then replaced by the next scripted call: a read_file of a new ~`step_tokens`-token module, whose
result grows the prompt as a real run's do. Step 1 evaluates the system prompt, the tools and the
task; each later step should evaluate only the last call and its result (state reuse), so its
time to first token should stay near step 1's however long the history grows. It still grows a
little: each step reads its new tokens after a longer history, and attention over it costs more
per token (llama-bench `-d` shows the same). The table's second row per model gives the tokens
each step evaluated, which is what state reuse decides.

Time to first token here is what a person watching the run waits for: from the loop's start of
the step (which renders and counts the prompt for the context budget) to the first generated token
(the engine's `ttft_s`, from the start of the prompt, plus the loop's time before it).

Each step's time is its best over `--agent-runs` runs (3 by default: one run is noise-bound, as
a profile put 99% of each step inside `llama_decode`), and llama-bench's time for the first and
last steps' tokens at their depths is taken once between every two runs, interleaved, so that
drift on a shared machine hits both sides alike; its best is compared with the steps' best.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from qwenlocal.agent.approval import YES, Approver
from qwenlocal.agent.events import StepStarted
from qwenlocal.agent.loop import Agent, Limits
from qwenlocal.agent.sandbox import Shell
from qwenlocal.agent.tools import Workspace
from qwenlocal.agent.undo import Run
from qwenlocal.engine import GenerateOptions, LlamaEngine
from qwenlocal.events import Done, PromptProgress, Stats
from qwenlocal.testing.toolcalls import tool_call

from . import loadavg

HEADING = "Agent steps: time to first token"


class ScriptedCalls:  # an Engine (qwenlocal.engine.Engine)
    """The real engine, whose every reply is replaced, once generated, by the next scripted call;
    records when each `stream` began."""

    def __init__(self, engine: LlamaEngine, calls: list[str]) -> None:
        self.engine, self.calls = engine, list(calls)
        self.started: list[float] = []

    @property
    def n_ctx(self) -> int:
        return self.engine.n_ctx

    @property
    def max_ctx(self) -> int:
        return self.engine.max_ctx

    def grow(self, needed: int) -> int | None:
        return self.engine.grow(needed)

    def stream(self, messages, options, tools=None, checkpoint=True, keep=()):
        self.started.append(time.perf_counter())
        for event in self.engine.stream(messages, options, tools, checkpoint, keep):
            yield replace(event, answer=self.calls.pop(0)) if isinstance(event, Done) else event

    def prompt_tokens(self, messages, think, tools=None):
        return self.engine.prompt_tokens(messages, think, tools)

    def render(self, messages, think, tools=None, generation=True):
        return self.engine.render(messages, think, tools, generation)

    def close(self) -> None:
        pass


def module_text(index: int, n_tokens: int, count) -> str:
    """Python-like source of about n_tokens tokens as `count` (the model's tokenizer) counts them,
    different per index."""
    lines: list[str] = []
    for n in range(100_000):
        lines.append(
            f"def handler_{index}_{n}(request, limit={n}):\n    return request.items[:limit] + [{index}]\n"
        )
        if n % 8 == 7 and count("".join(lines)) >= n_tokens:
            break
    while len(lines) > 1 and count("".join(lines[:-1])) >= n_tokens:
        lines.pop()
    return "".join(lines)


@dataclass
class AgentRun:
    """One agent run, per step: the row's figure (time to first token as a person waits for it),
    the engine's own stats, and the prompt's progress events (tokens read, seconds after the
    state was reused or restored)."""

    ttfts: list[float] = field(default_factory=list)
    stats: list[Stats] = field(default_factory=list)
    progress: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def evaluated(self) -> list[tuple[int, int]]:
        """(prompt tokens evaluated, tokens reused before them: the depth they were read at)."""
        return [(s.prompt_tokens - s.reused_tokens, s.reused_tokens) for s in self.stats]


def agent_steps(
    engine: LlamaEngine, sampling, steps: int, step_tokens: int, root: Path | None = None
) -> AgentRun:
    """One agent run of `steps` steps on an empty context (the first step from the start, as a new
    run's: from the disk's state cache where the engine has one), in the project folder `root`
    (made, and removed after; a new temporary one by default). The system prompt names the folder:
    runs that should share its state share the folder."""
    root = Path(root or tempfile.mkdtemp(prefix="qwenlocal-bench-agent-"))
    run = None
    try:
        (root / "src").mkdir(parents=True)
        for i in range(steps):
            text = module_text(i, step_tokens, lambda t: len(engine.tokenize(t)))
            (root / "src" / f"module{i}.py").write_text(text)
        calls = [tool_call("read_file", path=f"src/module{i}.py") for i in range(steps)]
        scripted = ScriptedCalls(engine, calls)
        options = GenerateOptions(sampling, max_tokens=32, ignore_eos=True, seed=1)
        begun: list[float] = []
        result = AgentRun()

        def listen(event) -> None:
            if isinstance(event, StepStarted):
                begun.append(time.perf_counter())
                result.progress.append([])
            elif isinstance(event, PromptProgress):
                result.progress[-1].append((event.done, event.seconds))
            elif isinstance(event, Done):
                result.ttfts.append(scripted.started[-1] - begun[-1] + event.stats.ttft_s)
                result.stats.append(event.stats)

        run = Run(root)
        workspace = Workspace(root, Shell(sandbox=False))
        agent = Agent(scripted, options, workspace, Approver(mode=YES), run, listen, Limits(max_steps=steps))
        engine.cache.reset()  # step 1 from an empty context (the context is created here, untimed)
        agent.solve("Read every module in src/ and summarise what the handlers do.")
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if run is not None:
            shutil.rmtree(run.dir, ignore_errors=True)


def best_steps(
    engine: LlamaEngine,
    sampling,
    runs: int,
    steps: int,
    step_tokens: int,
    between: Callable[[list[tuple[int, int]]], None] | None = None,
) -> tuple[list[float], list[tuple], list[list[float]]]:
    """Each step's best time over `runs` runs (shared machines only ever slow a run down), the
    (evaluated, depth) tokens of each step (the same in every run), and every run's times.
    `between(evaluated)` runs after each run: the reference, interleaved."""
    samples = []
    root = Path(tempfile.mkdtemp(prefix="qwenlocal-bench-agent-"))  # one folder: the same prompts
    for _ in range(runs):
        samples.append(agent_steps(engine, sampling, steps, step_tokens, root))
        if between is not None:
            between(samples[-1].evaluated)
    best = [min(step) for step in zip(*(s.ttfts for s in samples), strict=True)]
    return best, samples[-1].evaluated, [s.ttfts for s in samples]


def section(results, args, target: float, speed_target: float) -> list[str]:
    """The agent table's lines, for BENCHMARKS.md (after the multi-turn chat table)."""
    steps = args.steps
    lines = [
        f"{HEADING} ({steps} steps of the real agent loop, each reading a ~{args.turn_tokens}-token file "
        "whose result grows the prompt; 32-token replies replaced by scripted calls; each step's best",
        f"of {args.agent_runs} runs). Each step should read only its new tokens (state reuse), but reading as",
        "many tokens after a longer context costs more (attention over it): the llama-bench row is llama.cpp's",
        f"own time for step 1's and step {steps}'s evaluated tokens at their depths (`-p N -d DEPTH`, no agent,",
        f"no sampling; its best of {args.agent_runs} runs, one between every two agent runs), the ratio that",
        f"state reuse can reach at best; step {steps} against it is checked as prefill is (at >= {speed_target}x",
        "llama.cpp's speed):",
        "",
        "| model | "
        + " | ".join(f"step {i + 1}" for i in range(steps))
        + f" | step {steps} / step 1 | {loadavg.HEADER} |",
        "|---|" + "---|" * (steps + 2),
    ]
    for r in results:
        if not r.agent_steps:
            continue
        ratio = r.agent_steps[-1] / r.agent_steps[0]
        mark = "✅" if ratio <= target else "❌"
        busy = loadavg.cell(r.agent_load)
        lines.append(
            f"| {r.name} | "
            + " | ".join(f"{t:.2f}s" for t in r.agent_steps)
            + f" | {ratio:.2f} {mark} | {busy} |"
        )
        if r.agent_evaluated:
            counts = " | ".join(f"{n:,} at {depth:,}" for n, depth in r.agent_evaluated)
            lines.append(f"| {r.name}, prompt tokens evaluated at depth | {counts} | | |")
        if r.agent_reference:
            first, last = r.agent_reference
            gap = " | " * (steps - 1)
            lines.append(f"| {r.name}, llama-bench for the same tokens at the same depth | {first:.2f}s{gap}"
                         f"{last:.2f}s | {last / first:.2f} | {busy} |")  # fmt: skip
            speed = last / r.agent_steps[-1]
            mark = "✅" if speed >= speed_target else "❌"
            lines.append(
                f"| {r.name}, step {steps}: speed vs llama-bench |{' |' * steps} {speed:.2f}x {mark} | {busy} |"
            )
    return lines + [""]


def splice(report: str, lines: list[str]) -> str:
    """`report` with its agent section replaced by `lines`, or them put after the multi-turn table
    (or at the end): for `--only agent`, which measures this row alone."""
    old = report.splitlines()
    if any(line.startswith(HEADING) for line in old):
        start = next(i for i, line in enumerate(old) if line.startswith(HEADING))
        end = start + next(i for i, line in enumerate(old[start:]) if line.startswith("|")) + 1
        while end < len(old) and old[end].startswith("|"):
            end += 1
        return "\n".join(old[:start] + lines[:-1] + old[end:]) + "\n"
    chat = next((i for i, line in enumerate(old) if line.startswith("Multi-turn time to first token")), None)
    if chat is None:
        return report.rstrip("\n") + "\n\n" + "\n".join(lines)
    end = chat + next(i for i, line in enumerate(old[chat:]) if line.startswith("|"))
    while end < len(old) and old[end].startswith("|"):
        end += 1
    return "\n".join(old[:end] + [""] + lines[:-1] + old[end:]) + "\n"
