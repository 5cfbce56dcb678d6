"""Other conversations' states, kept whole in RAM, for a server that several clients take turns on.

The state cache (statecache.py) reuses what the context holds: the live conversation and its
recurrent checkpoints. When a prompt of another conversation comes, the context is overwritten and
the first conversation would be read again from its start on its next turn. So, before that, its
state at its latest checkpoint (its last turn boundary: where its next prompt goes on from) is
saved whole, KV cache and recurrent state (`llama_state_seq_get_data_ext` with flags 0), into a
least-recently-used store bounded in bytes, like llama-server's `--cache-ram` prompt cache. A
prompt that starts with a stored conversation's tokens restores it and evaluates only the rest.
What is evicted from RAM goes to the disk store (diskstate.py), when it is on.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Saved:
    tokens: tuple[int, ...]
    data: ctypes.Array


class PromptCache:
    def __init__(self, lib, ctx, limit_bytes: int) -> None:
        self._lib, self._ctx, self.limit = lib, ctx, limit_bytes
        self.entries: OrderedDict[tuple[int, ...], Saved] = OrderedDict()
        self.saves = self.restores = 0  # for tests and the benchmark

    @property
    def bytes(self) -> int:
        return sum(len(e.data) for e in self.entries.values())

    def longest(self, tokens: list[int]) -> Saved | None:
        """The stored conversation that `tokens` go on from (one token at least left to evaluate)."""
        best = None
        for saved in self.entries.values():
            n = len(saved.tokens)
            if (
                n < len(tokens)
                and (best is None or n > len(best.tokens))
                and tuple(tokens[:n]) == saved.tokens
            ):
                best = saved
        return best

    def save(self, cache) -> None:
        """Keep the conversation `cache` (a StateCache) holds, cut back to its latest checkpoint."""
        if not cache.checkpoints:
            return
        point = cache.checkpoints[-1]
        key = tuple(cache.live[: point.n_tokens])
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        lib, flags = self._lib, self._lib.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        memory = lib.llama_get_memory(self._ctx)
        at_end = cache._exact and len(cache.live) == point.n_tokens
        if not at_end and (
            not lib.llama_state_seq_set_data_ext(self._ctx, point.data, len(point.data), 0, flags)
            or not lib.llama_memory_seq_rm(memory, 0, point.n_tokens, -1)
        ):
            cache.reset()
            return
        cache.live, cache.checkpoints = list(key), [point]
        cache._exact = True
        size = lib.llama_state_seq_get_size_ext(self._ctx, 0, 0)
        if size > self.limit:
            cache.persist()  # too large to keep in RAM: on disk, if the store is on
            return
        data = (ctypes.c_uint8 * size)()
        if lib.llama_state_seq_get_data_ext(self._ctx, data, size, 0, 0) != size:
            return
        self.entries[key] = Saved(key, data)
        self.saves += 1
        while self.bytes > self.limit:
            _, evicted = self.entries.popitem(last=False)
            if cache.disk is not None:  # evicted from RAM, kept on disk for the conversation's return
                cache.disk.save(evicted.tokens, evicted.data)

    def restore(self, cache, saved: Saved) -> int:
        """Load a stored conversation into the context; the number of its tokens (0: failed)."""
        self.entries.pop(saved.tokens, None)  # it is the live one now; saved again when it is left
        if not self._lib.llama_state_seq_set_data_ext(self._ctx, saved.data, len(saved.data), 0, 0):
            cache.reset()
            return 0
        cache.live, cache.checkpoints = list(saved.tokens), []
        cache._exact = True
        self.restores += 1
        return len(saved.tokens)
