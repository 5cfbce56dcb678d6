"""Generation: evaluate the prompt (reusing the context's state), then sample and decode token by
token until a stop rule holds, closing the think block when the reasoning budget runs out."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from ..events import Done, Event, Notice, PromptProgress, Stats
from .base import GenerateOptions
from .llamacpp import Model
from .sampler import Sampler
from .thinking import ThinkSplitter

# What Qwen's own reasoning-budget recipe appends when the budget runs out.
BUDGET_CLOSE = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the "
    "thinking directly now.\n</think>\n\n"
)


@dataclass(frozen=True)
class PromptRun:
    """How the prompt was evaluated: the first half of the stats."""

    n_tokens: int
    reused: int  # tokens the context already held
    started: float  # perf_counter() when its evaluation began
    seconds: float
    image_tokens: int = 0  # of n_tokens, those that are images
    restored: int = 0  # of reused, those restored from the disk store (another process's)


def evaluate_prompt(
    model: Model,
    tokens: list[int],
    boundary: int,
    started: float,
    decode: Callable[[list[int]], Iterator[int]] | None = None,
    keep: tuple[int, ...] = (),
) -> Generator[PromptProgress, None, PromptRun]:
    """Leave the context holding `tokens`, evaluating only what it does not hold yet, and save a
    checkpoint at the turn `boundary` (0: none) for the next turn to start from, and the whole
    state on disk at each length in `keep` for the next process. Yields the progress after each
    batch; returns how it went. `decode` replaces `model.decode` for prompts with images."""
    model.open()
    cache = model.cache
    decode = decode or model.decode
    reused = cache.reuse(tokens)
    total, begun = len(tokens) - reused, time.perf_counter()
    stops = sorted({p for p in (boundary, *keep) if reused < p < len(tokens)})
    try:
        done, start = 0, reused
        for end in [*stops, len(tokens)]:
            for n in decode(tokens[start:end]):
                yield PromptProgress(done + n, total, time.perf_counter() - begun)
            done, start = done + end - start, end
            if end == boundary:
                cache.checkpoint()
            if end in keep:
                cache.persist()
    except BaseException:  # Ctrl-C while reading the prompt
        cache.interrupted()
        raise
    return PromptRun(len(tokens), reused, started, time.perf_counter() - started, restored=cache.restored)


@dataclass
class Tally:
    """What generation has produced so far."""

    tokens: list[int] = field(default_factory=list)
    reasoning_tokens: int = 0
    finish: str = "stop"
    ttft_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)  # when the first token was sampled

    def stats(self, model: Model, prompt: PromptRun) -> Stats:
        return Stats(
            load_s=model.load_s,
            prompt_tokens=prompt.n_tokens,
            prompt_s=prompt.seconds,
            generated_tokens=len(self.tokens),
            reasoning_tokens=self.reasoning_tokens,
            generate_s=time.perf_counter() - self.started,
            ttft_s=self.ttft_s,
            n_ctx=model.n_ctx,
            reused_tokens=prompt.reused,
            image_tokens=prompt.image_tokens,
            cached_tokens=prompt.restored,
        )


@dataclass(frozen=True)
class Limits:
    """The stop rules that count generated tokens, and the reasoning budget.

    While generating, the context holds the prompt and all generated tokens but the last, so
    "the context is full" (the next token has no room) is a count of generated tokens too."""

    max_tokens: int | None  # --max-tokens
    room: int  # the context's size less the prompt
    budget: int | None  # reasoning tokens before the think block is closed

    @classmethod
    def of(cls, options: GenerateOptions, n_ctx: int, prompt: PromptRun) -> Limits:
        budget = options.think_budget if options.think else None
        return cls(options.max_tokens, n_ctx - prompt.n_tokens, budget or None)

    @property
    def stop_at(self) -> int:
        """The number of generated tokens at which one of the rules holds."""
        return self.room if self.max_tokens is None else min(self.max_tokens, self.room)

    def reached(self, n_generated: int, n_ctx: int) -> tuple[str, Notice]:
        """The finish reason and its notice (--max-tokens first, as it is checked first)."""
        if self.max_tokens is not None and n_generated >= self.max_tokens:
            return "length", Notice(f"stopped at the limit of {self.max_tokens} tokens (--max-tokens)")
        return "context", Notice(f"stopped: the context of {n_ctx} tokens is full (raise --ctx)")


def generate(
    model: Model, options: GenerateOptions, prompt: PromptRun, tools: bool = False
) -> Iterator[Event]:
    """Sample after the evaluated prompt: text and reasoning events as they decode, then Done.
    With `tools` offered, a `<tool_call>` ends the reasoning (see thinking.py)."""
    lib, ctx, vocab, piece = model.lib, model.ctx, model.vocab, model.tokenizer.piece
    limits = Limits.of(options, model.n_ctx, prompt)
    stop_at = limits.stop_at
    splitter = ThinkSplitter(options.think, tools)
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    tally = Tally()
    tokens = tally.tokens
    with Sampler(lib, vocab, options) as sampler:
        try:
            while True:
                token = sampler.sample(ctx)
                if not tokens:
                    tally.started = time.perf_counter()
                    tally.ttft_s = tally.started - prompt.started
                if lib.llama_vocab_is_eog(vocab, token) and not options.ignore_eos:
                    break
                tokens.append(token)
                was_reasoning, before = splitter.in_reasoning, len(splitter.answer)
                yield from splitter.feed(utf8.decode(piece(token)))
                tally.reasoning_tokens += was_reasoning
                if options.stop and stop_found(splitter.answer, before, options.stop):
                    break
                if len(tokens) >= stop_at:
                    tally.finish, notice = limits.reached(len(tokens), model.n_ctx)
                    yield notice
                    break
                step = [token]
                if limits.budget and splitter.in_reasoning and tally.reasoning_tokens >= limits.budget:
                    close = model.tokenizer.tokenize(BUDGET_CLOSE, special=True)
                    if len(tokens) + len(close) < limits.room:
                        yield Notice(f"reasoning budget of {limits.budget} tokens reached; answering now")
                        step += close
                        tokens += close
                        sampler.accept(close)  # a grammar starts at its </think>
                        yield from splitter.feed(utf8.decode(b"".join(piece(t) for t in close)))
                model.eval(step)
            yield from splitter.feed(utf8.decode(b"", final=True))
            yield from splitter.flush()
        except BaseException:  # Ctrl-C or a closed generator: the context may be mid-step
            model.cache.interrupted()
            raise
    yield Done(splitter.answer, splitter.reasoning, tally.finish, tally.stats(model, prompt), tuple(tokens))


def stop_found(answer: str, before: int, stops: tuple[str, ...]) -> bool:
    """Whether a stop string ends in the text added to the answer after `before` characters (the
    caller cuts the answer at it: the text already streamed may hold it)."""
    return any(stop in answer[max(0, before - len(stop) + 1) :] for stop in stops if stop)
