"""llama.cpp's native sampler chain, built from the catalog's sampling settings and always freed;
with a grammar (grammar.py), a grammar sampler beside it that constrains the answer alone."""

from __future__ import annotations

import ctypes

from .base import GenerateOptions


class Sampler:
    """`with Sampler(lib, vocab, options) as s:`, then `s.sample(ctx)` picks each next token (and
    `s.accept(tokens)` tells it of tokens placed without sampling); freed however the block ends.

    A grammar is applied as llama.cpp's own common sampler does (common/sampling.cpp): the chain
    picks a token, the grammar checks that one token, and only when it is refused is the grammar
    applied to the candidates (see `_allowed`) and the token picked again. With thinking on the
    grammar is lazy: it waits for `</think>` and constrains what follows; before that it refuses
    nothing."""

    def __init__(self, lib, vocab, options: GenerateOptions) -> None:
        self._lib, self._vocab, self._options = lib, vocab, options
        self.chain = None
        self.grammar = None

    def __enter__(self):
        lib, s = self._lib, self._options.sampling
        self.chain = chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        try:
            for sampler in self._stages(s):
                lib.llama_sampler_chain_add(chain, sampler)
            if self._options.grammar is not None:
                self.grammar = self._grammar()
                self._candidates = Candidates(lib, self._vocab, self._options.logit_bias)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _stages(self, s):
        lib = self._lib
        if self._options.logit_bias:
            biases = (lib.llama_logit_bias * len(self._options.logit_bias))(*self._options.logit_bias)
            n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            yield lib.llama_sampler_init_logit_bias(n_vocab, len(self._options.logit_bias), biases)
        if s.temperature <= 0:
            yield lib.llama_sampler_init_greedy()
            return
        # top-k first, then penalties: llama.h advises against penalties over the whole vocabulary
        # (248K tokens here): measured, this order samples in 0.25 ms instead of 1.2 ms a token
        if s.top_k > 0:
            yield lib.llama_sampler_init_top_k(s.top_k)
        if s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty:
            n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            yield lib.llama_sampler_init_penalties(
                n_vocab, 64, s.repeat_penalty, s.frequency_penalty, s.presence_penalty
            )
        if s.top_p < 1.0:
            yield lib.llama_sampler_init_top_p(s.top_p, 1)
        if s.min_p > 0:
            yield lib.llama_sampler_init_min_p(s.min_p, 1)
        yield lib.llama_sampler_init_temp(s.temperature)
        seed = self._options.seed if self._options.seed is not None else lib.LLAMA_DEFAULT_SEED
        yield lib.llama_sampler_init_dist(seed & 0xFFFFFFFF)

    def _grammar(self):
        """Lazy with thinking on: a pattern trigger that matches `</think>` (or, for a tool call,
        `<tool_call>`) hands the grammar the text from the match on, as its start rule expects."""
        from .grammar import START

        lib, grammar, think = self._lib, self._options.grammar, self._options.think
        text, root = grammar.text(think).encode(), START.encode()
        if think:
            patterns = (ctypes.c_char_p * len(grammar.triggers))(*(t.encode() for t in grammar.triggers))
            made = lib.llama_sampler_init_grammar_lazy_patterns(
                self._vocab, text, root, patterns, len(grammar.triggers), None, 0
            )
        else:
            made = lib.llama_sampler_init_grammar(self._vocab, text, root)
        if not made:
            raise RuntimeError("llama.cpp refused a grammar that grammar.check() accepted")
        return made

    def sample(self, ctx) -> int:
        lib = self._lib
        if self.grammar is None:
            return lib.llama_sampler_sample(self.chain, ctx, -1)
        # the chain as it was, in case the grammar refuses its pick: its penalties must not
        # remember a token that was never written (a copy costs microseconds, a token milliseconds)
        kept = lib.llama_sampler_clone(self.chain)
        try:
            token = lib.llama_sampler_sample(self.chain, ctx, -1)
            if self._candidates.allows(self.grammar, token):
                lib.llama_sampler_free(kept)
            else:
                lib.llama_sampler_free(self.chain)
                self.chain, kept = kept, None
                cur = self._allowed(self._candidates.logits(lib.llama_get_logits_ith(ctx, -1)))
                lib.llama_sampler_apply(self.chain, ctypes.byref(cur))
                token = cur.data[cur.selected].id
                lib.llama_sampler_accept(self.chain, token)
        except BaseException:
            if kept is not None and kept != self.chain:
                lib.llama_sampler_free(kept)
            raise
        lib.llama_sampler_accept(self.grammar, token)
        return token

    def _allowed(self, logits):
        """The candidates with the grammar applied: first to the SHORTLIST most likely tokens,
        and to the whole vocabulary (248K tokens, tens of milliseconds) only when it allows none
        of them. The chain keeps the top `top_k` of what the grammar allows: when the shortlist
        holds that many, the pick is exactly llama.cpp's; when it holds fewer, the allowed tokens
        further down (each less likely than any in the shortlist) are left out."""
        lib, candidates = self._lib, self._candidates
        if self._options.sampling.top_k > 0 or self._options.sampling.temperature <= 0:
            cur, allowed = candidates.shortlist(logits, self.grammar)
            if allowed:
                return cur
        cur = candidates.fill(logits)
        lib.llama_sampler_apply(self.grammar, ctypes.byref(cur))
        return cur

    def accept(self, tokens: list[int]) -> None:
        """Tokens that were placed, not sampled (the reasoning budget's `</think>`): the grammar
        must see them, or it would never start."""
        if self.grammar is not None:
            for token in tokens:
                self._lib.llama_sampler_accept(self.grammar, token)

    def __exit__(self, *exc) -> None:
        if self.grammar is not None:
            self._lib.llama_sampler_free(self.grammar)
            self.grammar = None
        if self.chain is not None:
            self._lib.llama_sampler_free(self.chain)  # frees the samplers added to it too
            self.chain = None


class Candidates:
    """The vocabulary's logits as llama.cpp's candidate array, refilled for each pick (numpy: a
    few hundred microseconds for 248K tokens, against tens of milliseconds a decode)."""

    SHORTLIST = 256

    def __init__(self, lib, vocab, logit_bias: tuple[tuple[int, float], ...] = ()) -> None:
        import numpy as np

        self._lib, self._np = lib, np
        self.n = lib.llama_vocab_n_tokens(vocab)
        self._ids = np.arange(self.n, dtype=np.int32)
        dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
        assert dtype.itemsize == ctypes.sizeof(lib.llama_token_data)
        self._data = np.zeros(self.n, dtype)
        self._pointer = self._data.ctypes.data_as(lib.llama_token_data_p)
        self._bias = None  # the chain applies logit_bias itself; the shortlist is ranked with it
        if logit_bias:
            self._bias = np.zeros(self.n, np.float32)
            for token, bias in logit_bias:
                self._bias[token] += bias
        self._one = lib.llama_token_data()
        # the end of the answer, always among the shortlist: once the grammar is satisfied it is
        # all that is allowed, and it is seldom among the likeliest tokens before then
        ends = {lib.llama_vocab_eos(vocab), lib.llama_vocab_eot(vocab)}
        self._ends = [t for t in sorted(ends) if t >= 0 and lib.llama_vocab_is_eog(vocab, t)]

    def logits(self, pointer):
        return self._np.ctypeslib.as_array(pointer, shape=(self.n,))

    def fill(self, logits):
        data = self._data  # `p` is left as it was: every sampler that reads it computes it first
        data["id"] = self._ids
        data["logit"] = logits
        return self._lib.llama_token_data_array(self._pointer, self.n, -1, False)

    def shortlist(self, logits, grammar):
        """The SHORTLIST best tokens (the ends of generation among them) with the grammar applied,
        and how many of them it allows."""
        np, k = self._np, self.SHORTLIST
        ranked = logits if self._bias is None else logits + self._bias
        best = np.argpartition(ranked, self.n - k)[self.n - k :]
        missing = [end for end in self._ends if not (best == end).any()]
        if missing:
            best = np.concatenate((best, missing))
            k = len(best)
        data = self._data
        data["id"][:k] = best
        data["logit"][:k] = logits[best]
        cur = self._lib.llama_token_data_array(self._pointer, k, -1, False)
        self._lib.llama_sampler_apply(grammar, ctypes.byref(cur))
        return cur, int(np.count_nonzero(data["logit"][:k] != -np.inf))

    def allows(self, grammar, token: int) -> bool:
        """Whether the grammar lets `token` come next (checked alone: cheap)."""
        one = self._one
        one.id, one.logit, one.p = token, 1.0, 0.0
        single = self._lib.llama_token_data_array(ctypes.pointer(one), 1, -1, False)
        self._lib.llama_sampler_apply(grammar, ctypes.byref(single))
        return one.logit != float("-inf")
