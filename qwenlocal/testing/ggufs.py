"""GGUF files of the real `qwen35` architecture, written without real weights.

- `write_random(path)`: tiny random weights, the real tensor layout (3 Gated DeltaNet layers and
  one full-attention layer per block of four), a small byte-level BPE vocabulary with Qwen's
  special tokens and the official Qwen3.5 chat template.
- `write_scripted(path, replies)`: the same architecture, with weights chosen so that decoding
  emits chosen texts. Every block's output projection is zero, so the residual stream at a
  position is the embedding of its token; each token that starts or continues a reply has its own
  embedding direction, and the LM head points from each piece to the next. The next token then
  depends only on the current one: a deterministic model, sampled or greedy, through the real
  llama.cpp engine, tokenizer and chat template.

`replies` maps a trigger (the text of the last prompt token) to the text that follows it. The
chat template ends a non-thinking prompt with `</think>\\n\\n` (trigger `"\\n\\n"`) and a thinking
prompt with `<think>\\n` (trigger `"\\n"`). `think_reply(reasoning, answer)` builds the thinking
reply, which reaches `"\\n\\n"` after `</think>` and so continues with the non-thinking answer.

Needs the `gguf` package (the test extra).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<|vision_start|>",  # last, so the ids above stay as they were; images go between these two
    "<|vision_end|>",
    "<|image_pad|>",  # what the chat template writes for an image (replaced by the image's chunk)
]
VISION = {"<|vision_start|>", "<|vision_end|>", "<|image_pad|>"}
# control tokens, as in the real vocabulary; the rest are user-defined (decoded)
CONTROL = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"} | VISION
EOS = "<|im_end|>"


def chat_template() -> str:
    return resources.files(__package__).joinpath("qwen35_chat_template.jinja").read_text("utf-8")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (what byte-level BPE vocabularies use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


BYTE_CHARS = _bytes_to_unicode()


def encode_piece(text: str) -> str:
    return "".join(BYTE_CHARS[b] for b in text.encode("utf-8"))


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
    n_vocab: int | None = None  # pad the vocabulary to this size (the real one is 248,320)
    tied: bool = False  # no output.weight: the LM head is token_embd (0.8B, 2B and 4B are tied)


QWEN35_0_8B = Shape(24, 1024, 3584, 8, 2, 256, 64, (11, 11, 10, 0), 128, 16, 16, 262144, 248320, tied=True)
QWEN35_2B = Shape(24, 2048, 6144, 8, 2, 256, 64, (11, 11, 10, 0), 128, 16, 16, 262144, 248320, tied=True)


class Vocab:
    """Byte tokens, the merge for "\\n\\n", extra pieces, then Qwen's special tokens."""

    def __init__(self, pieces: list[str] = (), n_vocab: int | None = None) -> None:
        self.tokens: list[str] = [BYTE_CHARS[b] for b in range(256)]
        self.merges = ["Ċ Ċ"]
        self.tokens.append("ĊĊ")
        for piece in pieces:
            self.tokens.append(encode_piece(piece))
        self.special_start = len(self.tokens)
        self.tokens += SPECIAL
        if n_vocab is not None:
            self.tokens += [f"[PAD{i}]" for i in range(n_vocab - len(self.tokens))]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("duplicate token texts")

    def id(self, text: str) -> int:
        """The id of a special token or of a piece given as plain text."""
        return self.index[text] if text in SPECIAL else self.index[encode_piece(text)]

    def types(self) -> list[int]:
        # gguf TokenType: NORMAL 1, CONTROL 3, USER_DEFINED 4, UNUSED 5
        out = []
        for t in self.tokens:
            if t in CONTROL:
                out.append(3)
            elif t in SPECIAL:
                out.append(4)
            elif t.startswith("[PAD"):
                out.append(5)
            else:
                out.append(1)
        return out


def _write(path: Path, shape: Shape, vocab: Vocab, tensors: dict[str, np.ndarray], name: str) -> Path:
    import gguf

    path = Path(path)
    w = gguf.GGUFWriter(str(path), "qwen35")
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
    f16 = any(a.dtype == np.float16 for a in tensors.values())
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen35")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types())
    w.add_token_merges(vocab.merges)
    w.add_eos_token_id(vocab.index[EOS])
    w.add_pad_token_id(vocab.index["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(chat_template())
    for tname, array in tensors.items():
        w.add_tensor(tname, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tensors(
    shape: Shape, n_vocab: int, rng: np.random.Generator, scale: float, dtype=np.float32
) -> dict[str, np.ndarray]:
    """All tensors, numpy order (rows = ggml ne[1]). Norms near 1, ssm_a < 0, small matrices."""
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
        "token_embd.weight": mat(n_vocab, e),
        "output_norm.weight": np.ones(e, np.float32),
    }
    if not shape.tied:
        t["output.weight"] = mat(n_vocab, e)
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


def write_random(path: Path | str, shape: Shape = Shape(), seed: int = 0, f16: bool = False) -> Path:
    """Random weights. `f16=True` stores the matrices as F16 (half the size, for big shapes)."""
    vocab = Vocab(["Hello", " world", "    ", "def", " return"], n_vocab=shape.n_vocab)
    rng = np.random.default_rng(seed)
    tensors = _tensors(shape, len(vocab.tokens), rng, 0.02, np.float16 if f16 else np.float32)
    return _write(Path(path), shape, vocab, tensors, "tiny-random")


def quantize(src: Path | str, dst: Path | str, ftype: str = "Q4_K_M", threads: int = 0) -> Path:
    """Quantize a GGUF with llama.cpp's own quantizer (K-quants need it; gguf-py has none)."""
    from qwenlocal.engine.llamacpp import llama_lib  # llama.cpp with its log routed (quiet)

    llama_cpp = llama_lib()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = threads
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError(f"quantizing {src} to {ftype} failed")
    return Path(dst)


# -- scripted ---------------------------------------------------------------------------------


def think_reply(reasoning: str, answer: str) -> dict[str, str]:
    """Replies for a thinking model: reasoning after `<think>\\n`, then `</think>\\n\\n` and the answer."""
    return {"\n": f"{reasoning}\n</think>\n\n", "\n\n": answer}


# Like Qwen's pre-tokenizer: a word takes one leading space; longer runs of spaces (indentation)
# are pieces of their own.
_CHUNK = re.compile("|".join(map(re.escape, SPECIAL)) + r"| ?[^\W_]+| +(?= [^\W_])| +|\n+|.", re.S)


def split_pieces(text: str, taken: set[str]) -> list[str]:
    """Cut `text` into pieces, special tokens whole, so that no piece repeats or is `taken`.

    Single bytes and "\\n\\n" are taken by the base vocabulary, so short chunks are joined to the
    next ones (or, at the end, to the previous piece) until they are new.
    """
    pieces: list[str] = []
    current = ""

    def usable(piece: str) -> bool:
        return len(piece.encode()) > 1 and piece not in taken

    def flush_into_previous() -> None:
        nonlocal current
        if not current:
            return
        if not pieces or pieces[-1] in SPECIAL:
            raise ValueError(f"cannot make a unique piece of {current!r}")
        joined = pieces.pop() + current
        if joined in taken:
            raise ValueError(f"cannot make a unique piece of {joined!r}")
        pieces.append(joined)
        taken.add(joined)
        current = ""

    for chunk in _CHUNK.findall(text):
        if chunk in SPECIAL:
            flush_into_previous()
            if chunk in taken:
                raise ValueError(f"special token {chunk} used twice in one script")
            pieces.append(chunk)
            taken.add(chunk)
            continue
        current += chunk
        if usable(current):
            pieces.append(current)
            taken.add(current)
            current = ""
    flush_into_previous()
    return pieces


def write_scripted(
    path: Path | str,
    replies: dict[str, str],
    shape: Shape | None = None,
    loops: tuple[str, ...] = (),
    after_tool: dict[str, str] | None = None,
) -> Path:
    """A model that answers each trigger with its reply, then `<|im_end|>`.

    The replies of the triggers in `loops` never end: their last piece leads back to their first
    (a model that thinks, or talks, forever). `after_tool` gives other replies for prompts that
    already hold a `</tool_response>`: an agent's model that calls a tool, reads the result, then
    answers. The full-attention layer does that: every position attends (through the unrotated
    half of its head) to `</tool_response>` tokens and, if there is one, writes a "phase"
    direction into the residual stream that the LM head reads at the trigger.
    """
    shape = shape or Shape()
    after_tool = after_tool or {}
    taken: set[str] = {"\n", "\n\n"} | set(replies) | set(after_tool)
    scripts = [(t, r, 0) for t, r in replies.items()] + [(t, r, 1) for t, r in after_tool.items()]
    triggers = set(replies) | set(after_tool)
    # A reply that ends in "\n\n" while "\n\n" is itself a trigger goes on with that reply.
    links = [("\n\n" in triggers and t != "\n\n" and r.endswith("\n\n")) for t, r, _ in scripts]
    chains = [
        split_pieces(r[:-2] if link else r, taken) for (t, r, _), link in zip(scripts, links, strict=True)
    ]
    plain = [p for chain in chains for p in chain if p not in SPECIAL]
    vocab = Vocab(plain)
    n_vocab, e = len(vocab.tokens), shape.n_embd
    const, phase, mark = e - 1, e - 2, e - 3  # reserved residual directions
    rng = np.random.default_rng(0)
    t = _tensors(shape, n_vocab, rng, 0.02)
    for name in list(t):  # every block adds nothing to the residual stream...
        if name.endswith(("attn_output.weight", "ssm_out.weight", "ffn_down.weight")):
            t[name][:] = 0
    embd = np.zeros((n_vocab, e), np.float32)
    embd[:, const] = 1.0  # every token carries a constant direction (it opens the attention gate)
    embd[vocab.index["</tool_response>"], mark] = 1.0
    _phase_attention(t, shape, const, phase, mark)  # ... but the attention layer's phase signal
    head = np.zeros((n_vocab, e), np.float32)
    direction: dict[int, int] = {}

    def dir_of(token: int) -> int:
        if token not in direction:
            if len(direction) >= e - 3:
                raise ValueError("script too long for this embedding width")
            direction[token] = len(direction)
            embd[token, direction[token]] = 1.0
        return direction[token]

    for (trigger, _, phase_of), chain, link in zip(scripts, chains, links, strict=True):
        end = vocab.index["ĊĊ"] if link else vocab.index[EOS]
        if trigger in loops:
            end = vocab.id(chain[0])
        ids = [vocab.id(trigger)] + [vocab.id(p) for p in chain] + [end]
        first, rest = ids[:2], ids[1:]
        # at the trigger: this reply's first piece, by phase when the trigger has replies in both
        both = trigger in replies and trigger in after_tool
        # (weights: a plain step 20; a phase choice 20t - 10p against 15t + 10p, so the phase
        # signal, +10 anywhere after a tool result, never outweighs a plain step)
        row = head[first[1]]
        row[dir_of(first[0])] += 15.0 if both and phase_of else 20.0
        if both:
            row[phase] += 10.0 if phase_of else -10.0
        for prev, nxt in zip(rest, rest[1:], strict=False):  # then each piece leads to the next
            if head[:, dir_of(prev)].max() >= 20 and head[nxt, dir_of(prev)] < 20:
                raise ValueError(f"token {vocab.tokens[prev]!r} would need two successors")
            head[nxt, dir_of(prev)] = 20.0
    t["token_embd.weight"] = embd
    t["output.weight"] = head
    return _write(Path(path), shape, vocab, t, "tiny-scripted")


def _phase_attention(t: dict[str, np.ndarray], shape: Shape, const: int, phase: int, mark: int) -> None:
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
