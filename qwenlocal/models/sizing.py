"""`run`'s context, sized to its prompt: the prompt's tokens plus room for the answer, past the
default when the prompt needs it, up to what memory allows and the model was trained for.

The prompt is counted with the model's vocabulary before any context exists (llamacpp.Model
creates its context on first use), so sizing costs one tokenization and no second context. A
prompt that cannot fit in memory is refused with the numbers; one that fits only with a q8_0 KV
cache gets one, unless the user chose the cache type (see hardware.pick for the same rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ExitCode, QwenlocalError
from .memory import human_tokens, largest_context

if TYPE_CHECKING:
    from ..config import Settings
    from .loader import Loaded

ANSWER_RESERVE = 4096  # tokens kept for a run's answer (its reasoning too) without --max-tokens
CHARS_PER_TOKEN = 4  # about, for English prose and code: only to say how much text would fit


@dataclass(frozen=True)
class Sized:
    n_ctx: int
    kv_cache: str
    prompt_tokens: int
    reserve: int

    def notice(self, default: int, kv_before: str) -> str:
        cache = f", with a {self.kv_cache} KV cache to fit in memory" if self.kv_cache != kv_before else ""
        return (
            f"context sized to the prompt: {self.n_ctx} tokens ({self.prompt_tokens} of prompt + "
            f"{self.reserve} for the answer; the default is {default}){cache}"
        )


def _round_up(n: int, step: int = 1024) -> int:
    return -(-n // step) * step


def size_run(loaded: Loaded, settings: Settings, messages: list[dict], think: bool) -> Sized | None:
    """Resize the (not yet created) context of `loaded` to hold `messages` and an answer, when
    the default does not; None when nothing changes. Raises CONTEXT_OVERFLOW when even the
    prompt alone cannot fit in this machine's memory."""
    if settings.ctx is not None:  # the user's size stands; the engine refuses what does not fit
        return None
    engine, choice = loaded.engine, loaded.choice
    spec, train = choice.model, engine.trained_ctx or choice.model.context_length
    reserve = settings.max_tokens or ANSWER_RESERVE
    kv = choice.kv_cache
    largest = min(choice.max_ctx, train)
    cheaper = largest
    if settings.kv_cache is None and kv == "f16":
        cheaper = min(largest_context(spec, choice.context_room, "q8_0"), train)
    limit = max(largest, cheaper, engine.n_ctx)
    n = engine.count_tokens(messages, think, limit)
    if n + min(reserve, engine.n_ctx // 4) <= engine.n_ctx:  # the default holds it (a small one, mostly)
        return None
    if n + 1 > limit:
        raise _too_long(n, limit, "q8_0" if cheaper > largest else kv, spec.display, train)
    need = n + reserve
    if need > largest and cheaper > largest:
        kv, largest = "q8_0", cheaper
    size = max(min(_round_up(need), largest), engine.n_ctx)  # n < limit: the prompt fits
    engine.resize(size, kv)
    return Sized(engine.n_ctx, kv, n, min(reserve, engine.n_ctx - n))


def _too_long(n: int, limit: int, kv: str, model: str, train: int) -> QwenlocalError:
    if limit >= train:
        what = f"{model} reads at most {train} tokens"
    else:
        what = (
            f"this machine's free memory holds a context of {limit} tokens "
            f"({human_tokens(limit)}, {kv} KV cache) for {model}"
        )
    told = f"at least {n}" if n >= limit else str(n)
    usable = min(limit, train)  # the context may have been made larger than the model reads
    fits = max(usable - ANSWER_RESERVE, usable // 2)
    return QwenlocalError(
        f"the prompt is {told} tokens, but {what}",
        hint=f"shorten the input to about {fits} tokens (~{fits * CHARS_PER_TOKEN // 1000}K characters), "
        "free memory, or use a smaller model",
        code=ExitCode.CONTEXT_OVERFLOW,
    )
