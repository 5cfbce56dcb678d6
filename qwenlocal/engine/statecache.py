"""Reuse the model's state across turns, so each turn evaluates only its new tokens.

Qwen3.5 is hybrid: its attention layers keep a KV cache (which can be cut back to any position)
and its Gated DeltaNet layers keep a recurrent state (which cannot: it holds everything up to the
last token). llama-cpp-python therefore re-evaluates the whole conversation every turn. Here, as
llama-server does with its context checkpoints, the recurrent state alone is saved
(`LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`, ~20 MiB for 0.8B/2B, ~50 MiB for 4B/9B) at turn boundaries.
A new prompt that starts with the tokens up to a checkpoint restores that state, cuts the KV cache
back to the same position, and evaluates only the rest.

Between processes, whole states kept on disk (diskstate.py) do the same: a prompt whose longest
stored prefix is longer than what the context can reuse restores it from its file.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diskstate import DiskStates


@dataclass(frozen=True)
class Checkpoint:
    n_tokens: int
    data: ctypes.Array


class StateCache:
    """What sequence 0 of the context holds (`live`) and checkpoints of it at earlier lengths."""

    def __init__(self, lib, ctx, keep: int = 4) -> None:
        self._lib, self._ctx, self.keep = lib, ctx, keep
        self.live: list[int] = []
        self.checkpoints: list[Checkpoint] = []
        self._exact = True  # False after an interruption: the context may hold more than `live`
        self.stash = None  # a PromptCache (the server sets one): other conversations, kept whole
        self.disk: DiskStates | None = None  # states kept on disk between processes
        self.restored = 0  # of the last `reuse`, the tokens restored from disk

    def _memory(self):
        return self._lib.llama_get_memory(self._ctx)

    @property
    def exact(self) -> bool:
        """Whether the context holds exactly `live` (not so after an interruption)."""
        return self._exact

    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory(), True)
        self.live = []
        self.checkpoints = []
        self._exact = True

    def interrupted(self) -> None:
        """Generation stopped mid-way (Ctrl-C): restore a checkpoint next time, never assume."""
        self._exact = False

    def reuse(self, tokens: list[int]) -> int:
        """Leave the context holding the longest reusable prefix of `tokens`; return its length.

        At least one token is always left to evaluate (its logits start the answer)."""
        self.restored = 0
        common = 0
        limit = min(len(self.live), len(tokens) - 1)
        while common < limit and self.live[common] == tokens[common]:
            common += 1
        best = next((c for c in reversed(self.checkpoints) if c.n_tokens <= common), None)
        at_end = common == len(self.live) and self._exact  # the context ends where the prompt goes on
        saved = self.stash.longest(tokens) if self.stash is not None else None  # looked up once
        if self.disk is not None:
            here = common if at_end else (best.n_tokens if best else 0)
            restored = self._from_disk(tokens, max(here, len(saved.tokens) if saved else 0))
            if restored:
                return restored
        if at_end:
            return common
        if self.stash is not None:  # another conversation: keep this one, go on from a kept one
            if saved is not None and len(saved.tokens) > (best.n_tokens if best else 0):
                self.stash.save(self)
                return self.stash.restore(self, saved)
            if best is None:
                self.stash.save(self)
        if best is None:
            self.reset()
            return 0
        lib = self._lib
        flags = lib.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        restored = lib.llama_state_seq_set_data_ext(self._ctx, best.data, len(best.data), 0, flags)
        if not restored or not lib.llama_memory_seq_rm(self._memory(), 0, best.n_tokens, -1):
            self.reset()
            return 0
        self.live = self.live[: best.n_tokens]
        self._exact = True
        self.checkpoints = [c for c in self.checkpoints if c.n_tokens <= best.n_tokens]
        return best.n_tokens

    def _from_disk(self, tokens: list[int], reachable: int) -> int:
        """Restore the longest prefix of `tokens` stored on disk, if it is longer than `reachable`
        (what the context or the server's stash can give); its length, or 0."""
        tried = set()
        while True:  # a bad file is removed as it is read: then the next longest
            found = self.disk.longest(tokens, above=reachable)
            if found is None or found[1] in tried:  # (one that could not be removed: stop)
                return 0
            tried.add(found[1])
            data = self.disk.read(found[1], tokens, found[0])
            if data is not None:
                break
        if self.stash is not None:  # the conversation the context holds is kept, as for the stash's
            self.stash.save(self)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer(data)
        if self._lib.llama_state_seq_set_data_ext(self._ctx, buffer, len(data), 0, 0) != len(data):
            self.reset()
            return 0
        self.live, self.checkpoints, self._exact = list(tokens[: found[0]]), [], True
        self.restored = found[0]
        return found[0]

    def persist(self) -> None:
        """Keep the state of what the context holds on disk (in the background), when it is worth
        a file; the next process whose prompt starts so restores it."""
        if self.disk is None or not self._exact:
            return
        from .diskstate import state_of

        self.disk.save(tuple(self.live), lambda: state_of(self._lib, self._ctx))

    def checkpoint(self) -> None:
        """Save the recurrent state at the current end of the context."""
        n = len(self.live)
        if not n or any(c.n_tokens == n for c in self.checkpoints):
            return
        lib = self._lib
        flags = lib.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        size = lib.llama_state_seq_get_size_ext(self._ctx, 0, flags)
        data = (ctypes.c_uint8 * size)()
        if lib.llama_state_seq_get_data_ext(self._ctx, data, size, 0, flags) != size:
            return
        self.checkpoints = [c for c in self.checkpoints if c.n_tokens < n][-(self.keep - 1) :]
        self.checkpoints.append(Checkpoint(n, data))
