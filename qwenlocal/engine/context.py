"""The size of an engine's llama.cpp context: planned until the first prompt creates it, resized
to fit `run`'s prompt, grown for a long `chat` (what it holds is kept: see llamacpp.Model.resize),
never past what memory allows or the model was trained for. LlamaEngine is one."""

from __future__ import annotations

from .llamacpp import Model
from .statecache import StateCache


class Context:
    model: Model
    can_resize = True  # the context is this process's (a server's is the server's)

    @property
    def cache(self) -> StateCache:
        self.model.open()
        return self.model.cache

    @property
    def n_ctx(self) -> int:
        """The context's size in tokens (planned, until the first prompt creates it)."""
        return self.model.n_ctx

    @property
    def trained_ctx(self) -> int:
        """The context the model was trained for (0: the GGUF does not say)."""
        return self.model.n_ctx_train

    @property
    def max_ctx(self) -> int:
        """How far `grow` may take the context: what memory allows, within the trained length."""
        return max(min(self.model.options.max_ctx, self.trained_ctx or 1 << 30), self.n_ctx)

    @property
    def kv_cache(self) -> str:
        return self.model.options.kv_cache

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        """A context of `n_ctx` tokens; what the context holds is kept (see Model.resize)."""
        self.model.resize(n_ctx, kv_cache)

    def grow(self, needed: int) -> int | None:
        """Grow the context so that it holds `needed` tokens, if memory allows: to at least twice
        its size (fewer, larger steps), at most `max_ctx`. The new size, or None when it cannot."""
        if needed <= self.n_ctx:
            return self.n_ctx
        if needed > self.max_ctx:
            return None
        self.resize(min(max(2 * self.n_ctx, -(-needed // 1024) * 1024), self.max_ctx))
        return self.n_ctx
