"""Images through llama.cpp's libmtmd, used directly (not llama-cpp-python's MTMDChatHandler, which
clears the whole context on every call and never caps image tokens).

How an image reaches the model:
- the GGUF's own chat template writes `<|vision_start|><|image_pad|><|vision_end|>` where an image
  part of a message is; the text around it is tokenized as any prompt (the control-token shield
  still applies);
- libmtmd turns each image into one chunk: `mtmd_tokenize` of its media marker
  (`mtmd_default_marker()`) with the decoded bitmap, at most `image_max_tokens` tokens; the
  template's `<|image_pad|>` is replaced by that chunk (libmtmd's own start and end tokens around
  the marker are the template's, already there);
- the chunk is encoded by the projector and decoded into the context by
  `mtmd_helper_eval_chunk_single`, which sets Qwen's M-RoPE positions: an image advances the
  position by its `n_pos` (the larger side of its token grid), not by its token count.

So that state reuse across turns works unchanged (statecache.py compares token lists), an image is
written in the prompt's token list as `n_pos` copies of one negative id derived from its sha256
and token budget: the list's length stays the context's position, equal images compare equal, and
a follow-up question about the same image evaluates only the new text.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExitCode, QwenlocalError
from . import llamacpp
from .template import Piece, overflow

if TYPE_CHECKING:
    from ..images import Image

IMAGE_PAD = "<|image_pad|>"
_logging = False


def mtmd_lib():
    """llama_cpp.mtmd_cpp, with libmtmd's log routed into llama.cpp's log buffer."""
    global _logging
    llamacpp.llama_lib()
    from llama_cpp import mtmd_cpp

    if not _logging:
        mtmd_cpp.mtmd_log_set(llamacpp._log_callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(llamacpp._log_callback, ctypes.c_void_p(0))
        _logging = True
    return mtmd_cpp


def decoded_size(data: bytes) -> tuple[int, int] | None:
    """The image's size as libmtmd's own decoder (stb_image) reads it in full, or None when it
    cannot: images.load asks, so that a file the engine would fail on is refused up front."""
    mtmd = mtmd_lib()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    # a placeholder bitmap: decoded in full (so a corrupt file fails here) but not kept; without a
    # context libmtmd only takes its image path, which images.load's format check guarantees
    bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(None, buf, len(data), True)
    if not bitmap:
        return None
    try:
        return mtmd.mtmd_bitmap_get_nx(bitmap), mtmd.mtmd_bitmap_get_ny(bitmap)
    finally:
        mtmd.mtmd_bitmap_free(bitmap)


@dataclass(frozen=True)
class ImageChunk:
    id: int  # negative: never a vocabulary token
    n_pos: int  # positions it advances
    n_tokens: int  # embeddings it adds to the context (its KV cells)
    chunk: object  # an owned mtmd_input_chunk


class Projector:
    """A projector GGUF loaded for one model, and the chunks of the images it has seen."""

    def __init__(self, path: Path, model: llamacpp.Model, image_tokens: int | None) -> None:
        self.path = Path(path)
        self.mtmd = mtmd_lib()
        llamacpp.check_gguf(self.path)
        params = self.mtmd.mtmd_context_params_default()
        params.use_gpu = model.options.n_gpu_layers != 0
        params.n_threads = model.options.n_threads
        params.print_timings = False
        params.warmup = False  # no seconds of warm-up at load: the first image pays for itself
        if image_tokens:
            params.image_max_tokens = image_tokens  # the budget: fewer tokens, a smaller image
        self.image_tokens = image_tokens
        llamacpp.log_lines.clear()
        self.ctx = self.mtmd.mtmd_init_from_file(str(self.path).encode(), model.model, params)
        if not self.ctx:
            raise _load_error(self.path)
        if not self.mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise QwenlocalError(f"{self.path.name} has no vision encoder", code=ExitCode.MODEL_FILE)
        self.marker = self.mtmd.mtmd_default_marker()
        self._chunks: dict[str, ImageChunk] = {}

    def chunk(self, image: Image) -> ImageChunk:
        """The image's chunk (cached: the same image is preprocessed once per projector)."""
        if image.sha256 not in self._chunks:
            self._chunks[image.sha256] = self._tokenize(image)
        return self._chunks[image.sha256]

    def _tokenize(self, image: Image) -> ImageChunk:
        mtmd = self.mtmd
        buf = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buf, len(image.data), False)
        if not bitmap:
            raise QwenlocalError(
                f"{image.name}: the image decoder could not read it", code=ExitCode.BAD_INPUT
            )
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text(self.marker, len(self.marker), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if rc != 0:  # images.load refuses the shapes known to fail: this is the backstop
                raise QwenlocalError(
                    f"{image.name} ({image.width}x{image.height} pixels): the image encoder could not "
                    f"prepare it (libmtmd error {rc})",
                    hint="try another size or shape of the image, e.g. crop or resize it",
                    code=ExitCode.BAD_INPUT,
                )
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                found = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(found) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(found)
                    key = f"{image.sha256}:{n_tokens}".encode()
                    ident = -1 - int.from_bytes(hashlib.sha256(key).digest()[:4], "little") // 2
                    n_pos = mtmd.mtmd_input_chunk_get_n_pos(found)
                    return ImageChunk(ident, n_pos, n_tokens, mtmd.mtmd_input_chunk_copy(found))
            raise QwenlocalError(f"{image.name}: libmtmd made no image chunk of it")
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def forget(self) -> None:
        """Drop the prepared images (the benchmark measures an image seen for the first time)."""
        for chunk in self._chunks.values():
            self.mtmd.mtmd_input_chunk_free(chunk.chunk)
        self._chunks = {}

    def by_id(self, ident: int) -> ImageChunk:
        return next(c for c in self._chunks.values() if c.id == ident)

    def evaluate(self, model: llamacpp.Model, chunk: ImageChunk) -> None:
        """Encode the image and decode its embeddings after what the context holds."""
        cache = model.cache
        n_past = len(cache.live)
        new_n_past = model.lib.llama_pos(n_past)
        n_batch = model.options.n_batch
        rc = self.mtmd.mtmd_helper_eval_chunk_single(
            self.ctx, model.ctx, chunk.chunk, n_past, 0, n_batch, False, ctypes.byref(new_n_past)
        )
        if rc != 0:
            cache.reset()
            raise QwenlocalError(
                f"llama.cpp failed to evaluate an image (error {rc})",
                hint="memory may be short: try a smaller --image-tokens or --ctx",
            )
        cache.live += [chunk.id] * chunk.n_pos

    def close(self) -> None:
        self.forget()
        if getattr(self, "ctx", None):
            self.mtmd.mtmd_free(self.ctx)
            self.ctx = None


def _load_error(path: Path) -> QwenlocalError:
    import re

    log = "".join(llamacpp.log_lines)
    mismatch = re.search(r"text model \(n_embd = (\d+)\) and mmproj \(n_embd = (\d+)\)", log)
    if mismatch:
        model, projector = (int(n) for n in mismatch.groups())
        return QwenlocalError(
            f"cannot load the projector {path.name}: it is for {_sized(projector)}, "
            f"not for this model ({_sized(model)})",
            hint="use the mmproj GGUF of the same model size: `qwenlocal pull SIZE --vision` gets both",
            code=ExitCode.MODEL_FILE,
        )
    errors = [line.strip() for line in llamacpp.log_lines if "error" in line.lower() or "fail" in line]
    detail = errors[-1].split(": ", 1)[-1] if errors else "libmtmd could not load it"
    return QwenlocalError(
        f"cannot load the projector {path.name}: {detail.splitlines()[0]}",
        hint="it must be the mmproj GGUF of the same model (size); download it again with "
        "`qwenlocal pull SIZE --vision`, or run with QWENLOCAL_DEBUG=1 for the log",
        code=ExitCode.MODEL_FILE,
    )


def _sized(width: int) -> str:
    """A model width in words: the catalog's model of that width, when there is one."""
    from ..models.catalog import spec_for_embedding

    spec = spec_for_embedding(width)
    return f"{spec.display}, width {width}" if spec else f"a model of width {width}"


def tokens_with_images(
    pieces: list[Piece], tokenize: Callable[[str], list[int]], images: list[Image], projector: Projector
) -> list[int]:
    """The prompt's tokens, each `<|image_pad|>` of the template replaced by its image's run."""
    tokens: list[int] = []
    queue = list(images)
    for text, control in pieces:
        if control is not None and text == IMAGE_PAD:
            if not queue:
                raise QwenlocalError("the chat template placed more images than the conversation has")
            chunk = projector.chunk(queue.pop(0))
            tokens += [chunk.id] * chunk.n_pos
        else:
            tokens += [control] if control is not None else tokenize(text)
    if queue:
        raise QwenlocalError(
            f"the chat template left out {len(queue)} image(s) of the conversation",
            hint="images go in user messages (and tool results); the model's template has no place "
            "for them elsewhere",
            code=ExitCode.BAD_INPUT,
        )
    return tokens


def cells(tokens: list[int], projector: Projector) -> int:
    """The context cells `tokens` take: a text token one, an image its token count."""
    text = sum(1 for t in tokens if t >= 0)
    runs = {}
    for t in tokens:
        if t < 0:
            runs[t] = runs.get(t, 0) + 1
    return text + sum(projector.by_id(t).n_tokens * n // projector.by_id(t).n_pos for t, n in runs.items())


def check_fits(tokens: list[int], projector: Projector, n_ctx: int, n_ctx_train: int) -> int:
    n = cells(tokens, projector)
    if n >= n_ctx:
        raise overflow(str(n), n, n_ctx, n_ctx_train)
    return n


def decoder(model: llamacpp.Model, projector: Projector) -> Callable[[list[int]], Iterator[int]]:
    """A `decode(tokens)` for evaluate_prompt that evaluates image runs through libmtmd and, as
    `Model.decode` does, yields how many of `tokens` are evaluated after each step."""

    def decode(tokens: list[int]) -> Iterator[int]:
        start = 0
        while start < len(tokens):
            if tokens[start] >= 0:
                end = next((i for i in range(start, len(tokens)) if tokens[i] < 0), len(tokens))
                for n in model.decode(tokens[start:end]):
                    yield start + n
            else:
                chunk = projector.by_id(tokens[start])
                end = start + chunk.n_pos
                if tokens[start:end] != [chunk.id] * chunk.n_pos:  # never split: reuse stops at turns
                    model.cache.reset()
                    raise QwenlocalError("internal error: a prompt cut inside an image")
                projector.evaluate(model, chunk)
                yield end
            start = end

    return decode
