"""What the core tells the renderer: small frozen dataclasses, nothing that prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's thinking (inside <think> ... </think>)."""

    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know about, shown on stderr (budget reached, context full...)."""

    text: str


@dataclass(frozen=True)
class PromptProgress:
    """Reading the prompt: `done` of `total` tokens evaluated in `seconds` (reused ones not
    counted). Sent after each batch of a prompt; a renderer shows it only when it is long."""

    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def left_s(self) -> float:
        return (self.total - self.done) / self.rate if self.rate > 0 else 0.0


@dataclass(frozen=True)
class Stats:
    load_s: float
    prompt_tokens: int
    prompt_s: float
    generated_tokens: int
    reasoning_tokens: int
    generate_s: float
    ttft_s: float
    n_ctx: int
    reused_tokens: int = 0  # prompt tokens whose state was restored instead of evaluated
    image_tokens: int = 0  # prompt tokens that are images (counted in prompt_tokens)
    cached_tokens: int = 0  # of reused_tokens, those restored from the on-disk state cache

    @property
    def prompt_tps(self) -> float:
        evaluated = self.prompt_tokens - self.reused_tokens
        return evaluated / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def generate_tps(self) -> float:
        # the first token comes from the prompt's logits; the rest each cost one decode
        return max(self.generated_tokens - 1, 0) / self.generate_s if self.generate_s > 0 else 0.0

    @property
    def ctx_used(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(
            prompt_tps=round(self.prompt_tps, 2),
            generate_tps=round(self.generate_tps, 2),
            ctx_used=self.ctx_used,
        )
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()}


@dataclass(frozen=True)
class Done:
    """The end of one answer. `finish` is "stop", "length" (max tokens) or "context" (full)."""

    answer: str
    reasoning: str
    finish: str
    stats: Stats
    tokens: tuple[int, ...] = ()  # the generated token ids, as the model produced them


Event = TextDelta | ReasoningDelta | Notice | PromptProgress | Done
