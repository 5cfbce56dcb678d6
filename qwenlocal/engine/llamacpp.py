"""llama-cpp-python: imported once with its log captured, the checks made before loading, and the
ctypes model, context, batch and tokenizer.

With the rest of this package, the only code that touches llama-cpp-python; it uses the C API
directly: explicit context size, threads and GPU layers (never the library's defaults of 512 tokens
on the CPU), one reusable batch, and a detokenizer that decodes every token whole (llama-cpp-python
0.3.36 drops any token longer than 32 bytes). llama.cpp's own log goes to a buffer (printed with
QWENLOCAL_DEBUG=1), so a failed load can be explained in one line instead of a page of loader output.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..errors import ExitCode, QwenlocalError
from .amx import amx_off, cpu_has_amx
from .base import LoadOptions
from .statecache import StateCache

GGUF_MAGIC = b"GGUF"
log_lines: deque[str] = deque(maxlen=50)
_log_callback = None  # keeps the ctypes callback alive


def llama_lib():
    """Import llama_cpp once, route its log into a buffer (shown with QWENLOCAL_DEBUG=1)."""
    global _log_callback
    import llama_cpp

    if _log_callback is None:
        from ..config import debug

        show = debug()

        @llama_cpp.llama_log_callback
        def callback(level, text, user_data):
            line = text.decode("utf-8", "replace")
            log_lines.append(line)
            if show:
                import sys

                sys.stderr.write(line)

        _log_callback = callback
        sys.unraisablehook = _keep_interrupts(sys.unraisablehook)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


_interrupted = False  # a Ctrl-C that landed in the log callback, which ctypes cannot raise


def _keep_interrupts(hook):
    """ctypes reports an exception raised in a callback and drops it: a Ctrl-C pressed while
    llama.cpp logs (loading a vocabulary of 248,320 tokens logs a lot) would be lost. Keep it."""

    def unraisable(args) -> None:
        global _interrupted
        if args.exc_type is not None and issubclass(args.exc_type, KeyboardInterrupt):
            _interrupted = True
            return
        hook(args)

    return unraisable


def raise_kept_interrupt() -> None:
    """Raise the Ctrl-C the log callback kept, now that llama.cpp has returned."""
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt


def gpu_offload_supported() -> bool:
    return bool(llama_lib().llama_supports_gpu_offload())


def amx_kernels_off() -> str | None:
    """Why llama.cpp's AMX kernels stay off on this machine (amx.py), or None."""
    return amx_off(llama_lib()) if cpu_has_amx() else None


def quantize(src: Path, dst: Path, ftype: str, threads: int = 0) -> bool:
    """llama.cpp's own quantizer (the test GGUFs' K-quants, the benchmark's shape models): True
    when `dst` was written."""
    lib = llama_lib()
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = threads
    params.allow_requantize = True  # the vocabulary matrices of small test models are Q8_0 already
    return lib.llama_model_quantize(str(src).encode(), str(dst).encode(), params) == 0


def check_gguf(path: Path) -> None:
    """Refuse what llama.cpp cannot load, before it tries: missing files and non-GGUF files."""
    if not path.exists():
        raise QwenlocalError(
            f"model file not found: {path}",
            hint="check the path, or name a catalog model such as 2b (see `qwenlocal list`)",
            code=ExitCode.MODEL_FILE,
        )
    if not path.is_file():
        raise QwenlocalError(
            f"not a file: {path}", hint="give the path of a .gguf file", code=ExitCode.MODEL_FILE
        )
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise QwenlocalError(f"cannot read {path}: {exc.strerror}", code=ExitCode.MODEL_FILE) from None
    if magic != GGUF_MAGIC:
        raise QwenlocalError(
            f"{path} is not a GGUF model file",
            hint="qwenlocal runs GGUF files; get one with `qwenlocal pull`",
            code=ExitCode.MODEL_FILE,
        )


def context_error(n_ctx: int, path: Path, kv_cache: str) -> QwenlocalError:
    """Why llama.cpp would not create a context: a cache type the model's head size does not
    allow (its log says so), or else memory."""
    import re

    for line in log_lines:
        found = re.search(r"(K|V) cache type (\w+) with block size (\d+) does not divide (\w+)=(\d+)", line)
        if found:
            _, cache, block, _, head = found.groups()
            return QwenlocalError(
                f"{path.name} cannot use a {cache} KV cache: its attention heads have {head} values, "
                f"not a multiple of {cache}'s block of {block}",
                hint="use --kv-cache f16 (or another cache type whose block divides the head size)",
                code=ExitCode.USAGE,
            )
    return QwenlocalError(
        f"cannot create a context of {n_ctx} tokens for {path.name}",
        hint="try a smaller --ctx (the machine may be short of memory)",
        code=ExitCode.DOES_NOT_FIT,
    )


def load_error(path: Path) -> QwenlocalError:
    errors = [line.strip() for line in log_lines if "error" in line.lower() or "fail" in line.lower()]
    detail = next((e for e in reversed(errors) if "corrupt" in e or "bounds" in e or "truncat" in e), None)
    detail = detail or (errors[0] if errors else "llama.cpp could not load it")
    return QwenlocalError(
        f"cannot load {path}: {detail.split(': ', 1)[-1].removeprefix('error loading model: ')}",
        hint="the file may be truncated or corrupt: download it again (`qwenlocal pull`), "
        "or run with QWENLOCAL_DEBUG=1 for llama.cpp's log",
        code=ExitCode.MODEL_FILE,
    )


class Model:
    """One loaded GGUF: its weights and vocabulary, one context with its batch and state cache.

    The context is created on first use (`open`), so that a caller can count a prompt's tokens
    with the vocabulary first and size the context to it (`resize`) at no cost; a context that
    exists already grows by moving its sequence's state into a larger one (`resize`)."""

    def __init__(self, path: Path, options: LoadOptions) -> None:
        self.path, self.options = path, options
        check_gguf(path)
        lib = self.lib = llama_lib()
        started = time.perf_counter()
        log_lines.clear()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = options.n_gpu_layers
        # Read the weights into memory rather than mmap them: llama.cpp repacks most CPU weights
        # into a faster layout, and with mmap the original pages stay resident too (~40% of the
        # file held twice). The pick has already checked that the model fits in free RAM.
        mparams.load_mode = lib.LLAMA_LOAD_MODE_NONE
        mparams.use_extra_bufts = amx_off(lib) is None  # see amx.py: a build whose AMX code crashes
        self.model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise load_error(path)
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.tokenizer = Tokenizer(lib, self.vocab)
        self.ctx = self.batch = self.cache = None
        self.n_ctx = options.n_ctx  # the context's size: planned until `open`, then llama.cpp's
        self.projector: Path | None = None  # a vision projector attached to it (part of a state's key)
        self.states = None  # the disk store of states (diskstate.py), made with the first context
        self.load_s = time.perf_counter() - started
        if _interrupted:  # Ctrl-C while loading: stop now, nothing half-made left
            self.close()
            raise_kept_interrupt()

    # -- the context ----------------------------------------------------------------------

    def open(self) -> None:
        """Create the context, if there is none yet (its time counts as loading time)."""
        if self.ctx:
            return
        started = time.perf_counter()
        self.ctx = self._new_context(self.options.n_ctx)
        self.n_ctx = self.lib.llama_n_ctx(self.ctx)
        self.batch = self.lib.llama_batch_init(self.options.n_batch, 0, 1)
        self.cache = StateCache(self.lib, self.ctx)
        self.cache.disk = self._disk_states()
        self.load_s += time.perf_counter() - started

    def _disk_states(self):
        """The disk store for this model setup (None when it is off); its key is fixed when the
        first context is made, as the KV cache type then is."""
        if self.states is None and self.options.state_dir:
            from importlib.metadata import version

            from .diskstate import DiskStates

            info = self.path.stat()
            projector = self.projector.stat() if self.projector else None
            identity = {
                "model": self.path.name,
                "file": [str(self.path.resolve()), info.st_size, info.st_mtime_ns],
                "projector": [str(self.projector.resolve()), projector.st_size, projector.st_mtime_ns]
                if projector
                else None,
                "llama_cpp_python": version("llama-cpp-python"),
                "kv_cache": self.options.kv_cache,
            }
            self.states = DiskStates(Path(self.options.state_dir), identity, self.options.state_max)
        return self.states

    def _new_context(self, n_ctx: int):
        lib, options = self.lib, self.options
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = options.n_batch
        cparams.n_seq_max = 1
        cparams.n_outputs_max = 1  # logits for the last token only: a smaller compute buffer
        cparams.n_threads = cparams.n_threads_batch = options.n_threads
        cparams.type_k = cparams.type_v = kv_type(lib, options.kv_cache)
        if options.kv_cache != "f16":  # llama.cpp quantizes the V cache only with flash attention
            cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        log_lines.clear()
        ctx = lib.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise context_error(n_ctx, self.path, options.kv_cache)
        return ctx

    def resize(self, n_ctx: int, kv_cache: str | None = None) -> None:
        """Make the context `n_ctx` tokens. Before `open` this only changes the plan (the KV cache
        type too); after, the sequence's whole state (KV cache and recurrent state, flags 0) is
        copied out, the old context freed, and the state restored into a new one of the same
        cache type: nothing is evaluated again."""
        if kv_cache is not None and not self.ctx:
            self.options = replace(self.options, kv_cache=kv_cache)
        self.options = replace(self.options, n_ctx=n_ctx)
        if not self.ctx:
            self.n_ctx = n_ctx
            return
        lib, old = self.lib, self.ctx
        live, exact, checkpoints = list(self.cache.live), self.cache.exact, self.cache.checkpoints
        size = lib.llama_state_seq_get_size_ext(old, 0, 0)
        state = (ctypes.c_uint8 * size)()
        saved = live and exact and lib.llama_state_seq_get_data_ext(old, state, size, 0, 0) == size
        lib.llama_free(old)
        lib.llama_batch_free(self.batch)
        self.ctx = self.batch = self.cache = None
        self.open()
        if saved and lib.llama_state_seq_set_data_ext(self.ctx, state, size, 0, 0) == size:
            # the checkpoints (recurrent states at turn boundaries) hold for the new one too
            self.cache.live, self.cache.checkpoints = live, checkpoints

    # -- model facts ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    @property
    def n_embd(self) -> int:
        return self.lib.llama_model_n_embd(self.model)

    @property
    def n_ctx_train(self) -> int:
        return self.lib.llama_model_n_ctx_train(self.model)

    # -- evaluation -----------------------------------------------------------------------

    def decode(self, tokens: list[int]) -> Iterator[int]:
        """Evaluate `tokens` after what the context holds, in batches of n_batch (a Ctrl-C is
        seen between two), yielding the number evaluated after each; logits for the last one."""
        self.open()
        lib, batch, n_batch = self.lib, self.batch, self.options.n_batch
        start = len(self.cache.live)
        for offset in range(0, len(tokens), n_batch):
            chunk = tokens[offset : offset + n_batch]
            batch.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = False
            batch.logits[len(chunk) - 1] = offset + len(chunk) == len(tokens)
            rc = lib.llama_decode(self.ctx, batch)
            if rc != 0:
                self.cache.reset()
                raise QwenlocalError(
                    f"llama.cpp failed to evaluate the prompt (llama_decode returned {rc})",
                    hint="the context may be full or memory short: try a smaller --ctx",
                    code=ExitCode.ERROR,
                )
            self.cache.live += chunk
            yield offset + len(chunk)

    def eval(self, tokens: list[int]) -> None:
        """Evaluate `tokens` (see `decode`) without watching the progress."""
        for _ in self.decode(tokens):
            pass

    def close(self) -> None:
        lib = self.lib
        if getattr(self, "states", None) is not None:
            self.states.flush()  # what is being written is finished first: a whole file or none
        if getattr(self, "batch", None) is not None:
            lib.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None


def kv_type(lib, name: str) -> int:
    """The ggml type of a KV cache type's name (f16, q8_0, q4_0)."""
    return {"f16": lib.GGML_TYPE_F16, "q8_0": lib.GGML_TYPE_Q8_0, "q4_0": lib.GGML_TYPE_Q4_0}[name]


class Tokenizer:
    """Text <-> tokens with the model's vocabulary."""

    def __init__(self, lib, vocab) -> None:
        self._lib, self._vocab = lib, vocab
        self._pieces: dict[int, bytes] = {}

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

    def controls(self) -> dict[str, int]:
        """The text and id of every control token of the vocabulary."""
        lib, vocab = self._lib, self._vocab
        found = {}
        for token in range(lib.llama_vocab_n_tokens(vocab)):
            if lib.llama_vocab_is_control(vocab, token):
                text = self._special_text(token)
                if text:
                    found[text] = token
        return found

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
