"""The llama.cpp engine: load a GGUF, render its own chat template, stream events.

With llamacpp.py, the only code that touches llama-cpp-python; it uses the C API directly: explicit
context size, threads and GPU layers (never the library's defaults of 512 tokens on the CPU),
one reusable batch, a native sampler chain, and a detokenizer that decodes every token whole
(llama-cpp-python 0.3.36 drops any token longer than 32 bytes).
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .catalog import Sampling
from .errors import Exit, QwenlocalError
from .events import Done, Event, Notice, Stats
from .llamacpp import check_gguf, llama_lib, load_error, log_lines
from .markup import Shield
from .statecache import StateCache
from .thinking import ThinkSplitter

# A rendered prompt longer than this is first counted in bounded pieces, so that a huge input is
# refused without tokenizing all of it at once (50 MiB of stdin took 3.3 GB that way).
COUNT_FIRST_CHARS = 1 << 18
COUNT_CHUNK_CHARS = 1 << 16

# What Qwen's own reasoning-budget recipe appends when the budget runs out.
BUDGET_CLOSE = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the "
    "thinking directly now.\n</think>\n\n"
)


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int
    n_threads: int
    n_gpu_layers: int = 0
    n_batch: int = 512


@dataclass(frozen=True)
class GenerateOptions:
    sampling: Sampling
    think: bool = False
    think_budget: int | None = None  # reasoning tokens before the think block is closed
    max_tokens: int | None = None
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens, as llama-bench does


class LlamaEngine:
    """One loaded model and its context. `stream()` is the one way to generate."""

    def __init__(self, path: Path | str, options: LoadOptions) -> None:
        self.path = Path(path)
        self.options = options
        check_gguf(self.path)
        lib = self._lib = llama_lib()
        started = time.perf_counter()
        log_lines.clear()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = options.n_gpu_layers
        # Read the weights into memory rather than mmap them: llama.cpp repacks most CPU weights
        # into a faster layout, and with mmap the original pages stay resident too (~40% of the
        # file held twice). The pick has already checked that the model fits in free RAM.
        mparams.load_mode = lib.LLAMA_LOAD_MODE_NONE
        self._model = lib.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise load_error(self.path)
        self._vocab = lib.llama_model_get_vocab(self._model)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = options.n_ctx
        cparams.n_batch = cparams.n_ubatch = options.n_batch
        cparams.n_seq_max = 1
        cparams.n_outputs_max = 1  # logits for the last token only: a smaller compute buffer
        cparams.n_threads = cparams.n_threads_batch = options.n_threads
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lib.llama_model_free(self._model)
            self._model = None
            raise QwenlocalError(
                f"cannot create a context of {options.n_ctx} tokens for {self.path.name}",
                hint="try a smaller --ctx (the machine may be short of memory)",
                code=Exit.DOES_NOT_FIT,
            )
        self.n_ctx = lib.llama_n_ctx(self._ctx)
        self._batch = lib.llama_batch_init(options.n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self.load_s = time.perf_counter() - started
        self.template = self.meta("tokenizer.chat_template")
        self._formatters: dict[bool, object] = {}
        self._shield: Shield | None = None
        self.cache = StateCache(lib, self._ctx)

    # -- model facts ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    @property
    def architecture(self) -> str | None:
        return self.meta("general.architecture")

    @property
    def n_embd(self) -> int:
        return self._lib.llama_model_n_embd(self._model)

    # -- text <-> tokens ------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Tokens of `text`; control-token texts in it become control tokens only with `special`."""
        data = text.encode("utf-8")
        size = len(data) + 16
        buf = (self._lib.llama_token * size)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, size, False, special)
        if n < 0:  # cannot happen with one token per byte at most, but be exact anyway
            buf = (self._lib.llama_token * -n)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, -n, False, special)
        return list(buf[:n])

    @property
    def shield(self) -> Shield:
        """The control tokens of this vocabulary, found once (0.1-0.2 s for Qwen's 248K tokens)."""
        if self._shield is None:
            lib, vocab = self._lib, self._vocab
            controls = {}
            for token in range(lib.llama_vocab_n_tokens(vocab)):
                if lib.llama_vocab_is_control(vocab, token):
                    text = self._special_text(token)
                    if text:
                        controls[text] = token
            self._shield = Shield(controls)
        return self._shield

    def _special_text(self, token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def piece(self, token: int) -> bytes:
        """The bytes of one token, however long (the library's own detokenize stops at 32)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        self._pieces[token] = buf.raw[:n]
        return self._pieces[token]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        """The prompt as text, written by the GGUF's own chat template with `enable_thinking` set.

        `generation=False` leaves out the assistant's opening (`<|im_start|>assistant...`): the part
        that later turns render differently, so the end of the rest is a turn boundary."""
        return "".join(text for text, _ in self._parts(messages, think, tools, generation))

    def _parts(self, messages, think, tools, generation=True):
        """The rendered prompt as plain text runs and the template's own control tokens."""
        if not self.template:
            raise QwenlocalError(
                f"{self.path.name} has no chat template",
                hint="use a chat (instruct) GGUF of Qwen3.5, e.g. `qwenlocal pull 2b`",
                code=Exit.MODEL_FILE,
            )
        if generation not in self._formatters:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatters[generation] = Jinja2ChatFormatter(
                self.template, eos_token="<|im_end|>", bos_token="", add_generation_prompt=generation
            )
        shield = self.shield
        try:
            rendered = self._formatters[generation](
                messages=shield.hide(messages), tools=shield.hide(tools), enable_thinking=think
            ).prompt
        except Exception as exc:  # the template's raise_exception() and jinja errors
            raise QwenlocalError(
                f"the chat template rejected the conversation: {exc}", code=Exit.BAD_INPUT
            ) from None
        return list(shield.pieces(rendered))

    def _tokens(self, pieces) -> list[int]:
        """Plain runs tokenized as text, never as control tokens; markup as its token."""
        tokens: list[int] = []
        for text, control in pieces:
            tokens += [control] if control is not None else self.tokenize(text)
        return tokens

    def _count_at_least(self, pieces, limit: int) -> tuple[int, int]:
        """Tokens counted a slice at a time until `limit`: (count, characters counted).

        Slices end at line ends, so the count is close to exact while memory stays small."""
        count = chars = 0
        for text, control in pieces:
            for chunk in [text] if control is not None else _chunks(text, COUNT_CHUNK_CHARS):
                count += 1 if control is not None else len(self.tokenize(chunk))
                chars += len(chunk)
                if count >= limit:
                    return count, chars
        return count, chars

    # -- generation -----------------------------------------------------------------------

    def _decode(self, tokens: list[int]) -> None:
        """Evaluate `tokens` after what the context holds, in batches; logits for the last one."""
        lib, batch = self._lib, self._batch
        start = len(self.cache.live)
        for offset in range(0, len(tokens), self.options.n_batch):
            chunk = tokens[offset : offset + self.options.n_batch]
            batch.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = False
            batch.logits[len(chunk) - 1] = offset + len(chunk) == len(tokens)
            rc = lib.llama_decode(self._ctx, batch)
            if rc == 0:
                self.cache.live += chunk
            else:
                self.cache.reset()
                raise QwenlocalError(
                    f"llama.cpp failed to evaluate the prompt (llama_decode returned {rc})",
                    hint="the context may be full or memory short: try a smaller --ctx",
                    code=Exit.ERROR,
                )

    def _sampler(self, options: GenerateOptions):
        lib, s = self._lib, options.sampling
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lambda smpl: lib.llama_sampler_chain_add(chain, smpl)  # noqa: E731
        if s.temperature <= 0:
            add(lib.llama_sampler_init_greedy())
            return chain
        # top-k first, then penalties: llama.h advises against penalties over the whole vocabulary
        # (248K tokens here): measured, this order samples in 0.25 ms instead of 1.2 ms a token
        if s.top_k > 0:
            add(lib.llama_sampler_init_top_k(s.top_k))
        if s.repeat_penalty != 1.0 or s.presence_penalty:
            n_vocab = lib.llama_vocab_n_tokens(self._vocab)
            add(lib.llama_sampler_init_penalties(n_vocab, 64, s.repeat_penalty, 0.0, s.presence_penalty))
        if s.top_p < 1.0:
            add(lib.llama_sampler_init_top_p(s.top_p, 1))
        if s.min_p > 0:
            add(lib.llama_sampler_init_min_p(s.min_p, 1))
        add(lib.llama_sampler_init_temp(s.temperature))
        seed = options.seed if options.seed is not None else lib.LLAMA_DEFAULT_SEED
        add(lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def prompt_tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """Render and tokenize; refuse a prompt that does not fit (never truncate it)."""
        pieces = self._parts(messages, think, tools)
        size = sum(len(text) for text, _ in pieces)
        if size > COUNT_FIRST_CHARS:
            count, counted = self._count_at_least(pieces, self.n_ctx)
            if count >= self.n_ctx:
                estimate = count * size // max(counted, 1)
                self._overflow(f"about {estimate}" if counted < size else str(count), estimate)
        tokens = self._tokens(pieces)
        if len(tokens) >= self.n_ctx:
            self._overflow(str(len(tokens)), len(tokens))
        return tokens

    def _overflow(self, told: str, n: int):
        most = self._lib.llama_model_n_ctx_train(self._model)
        if n < most:
            hint = f"shorten the input or raise the context, e.g. --ctx {min(_round_up(n * 2), most)}"
        else:
            hint = f"shorten the input: this model reads at most {most} tokens"
        raise QwenlocalError(
            f"the prompt is {told} tokens but the context holds {self.n_ctx}",
            hint=hint,
            code=Exit.CONTEXT_OVERFLOW,
        )

    def stream(
        self,
        messages: list[dict],
        options: GenerateOptions,
        tools: list[dict] | None = None,
        checkpoint: bool = True,
    ) -> Iterator[Event]:
        """Answer the conversation: ReasoningDelta / TextDelta / Notice events, then Done.

        `checkpoint=False` is for one-shot prompts: no later turn will reuse the state, so the
        prompt is evaluated in one go, without stopping at the turn boundary to save it."""
        lib = self._lib
        tokens = self.prompt_tokens(messages, options.think, tools)
        started = time.perf_counter()
        # the turn boundary: where this prompt stops matching what later turns will render
        boundary = 0
        if checkpoint:
            base = self._tokens(self._parts(messages, options.think, tools, generation=False))
            boundary = next(
                (i for i, (a, b) in enumerate(zip(base, tokens, strict=False)) if a != b), len(base)
            )
        reused = self.cache.reuse(tokens)
        try:
            if reused < boundary:
                self._decode(tokens[reused:boundary])
                self.cache.checkpoint()
            self._decode(tokens[len(self.cache.live) :])
        except BaseException:  # Ctrl-C while reading the prompt
            self.cache.interrupted()
            raise
        prompt_s = time.perf_counter() - started
        n_past = len(tokens)
        sampler = self._sampler(options)
        splitter = ThinkSplitter(options.think)
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        generated: list[int] = []
        reasoning_tokens = 0
        finish = "stop"
        ttft = 0.0
        gen_started = time.perf_counter()
        budget = options.think_budget if options.think else None
        try:
            while True:
                token = lib.llama_sampler_sample(sampler, self._ctx, -1)
                if not generated:
                    ttft = time.perf_counter() - started
                    gen_started = time.perf_counter()
                if lib.llama_vocab_is_eog(self._vocab, token) and not options.ignore_eos:
                    break
                generated.append(token)
                was_reasoning = splitter.in_reasoning
                yield from splitter.feed(utf8.decode(self.piece(token)))
                reasoning_tokens += was_reasoning
                if options.max_tokens is not None and len(generated) >= options.max_tokens:
                    finish = "length"
                    yield Notice(f"stopped at the limit of {options.max_tokens} tokens (--max-tokens)")
                    break
                if n_past + 1 >= self.n_ctx:
                    finish = "context"
                    yield Notice(f"stopped: the context of {self.n_ctx} tokens is full (raise --ctx)")
                    break
                step = [token]
                if budget and splitter.in_reasoning and reasoning_tokens >= budget:
                    close = self.tokenize(BUDGET_CLOSE, special=True)
                    if n_past + 1 + len(close) < self.n_ctx:
                        yield Notice(f"reasoning budget of {budget} tokens reached; answering now")
                        step += close
                        generated += close
                        yield from splitter.feed(utf8.decode(b"".join(self.piece(t) for t in close)))
                self._decode(step)
                n_past += len(step)
            yield from splitter.feed(utf8.decode(b"", final=True))
            yield from splitter.flush()
        except BaseException:  # Ctrl-C or a closed generator: the context may be mid-step
            self.cache.interrupted()
            raise
        finally:
            lib.llama_sampler_free(sampler)
        stats = Stats(
            load_s=self.load_s,
            prompt_tokens=len(tokens),
            prompt_s=prompt_s,
            generated_tokens=len(generated),
            reasoning_tokens=reasoning_tokens,
            generate_s=time.perf_counter() - gen_started,
            ttft_s=ttft,
            n_ctx=self.n_ctx,
            reused_tokens=reused,
        )
        yield Done(splitter.answer, splitter.reasoning, finish, stats, tuple(generated))

    def close(self) -> None:
        lib = self._lib
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lib.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(text: str, size: int):
    """`text` in slices of at most `size` characters, each cut after a line end where one is."""
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _round_up(n: int) -> int:
    size = 1024
    while size < n:
        size *= 2
    return size


def with_temperature(sampling: Sampling, temperature: float | None) -> Sampling:
    return sampling if temperature is None else replace(sampling, temperature=temperature)
