"""The real llama.cpp engine on qwen35 GGUFs written by the suite."""

from __future__ import annotations

import pytest

from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.events import Done, Notice, ReasoningDelta, TextDelta
from qwenlocal.models.catalog import load
from qwenlocal.testing import ggufs
from qwenlocal.testing.vocab import SPECIAL_START

from .conftest import ANSWER, LONG_REASONING, REASONING

SMALL = load().models["qwen3.5-0.8b"]
HI = [{"role": "user", "content": "hi"}]


def options(think: bool, **kw) -> GenerateOptions:
    return GenerateOptions(sampling=SMALL.sampling(think), think=think, **kw)


@pytest.fixture(scope="module")
def engine(answer_model):
    with LlamaEngine(answer_model, LoadOptions(n_ctx=2048, n_threads=2)) as e:
        yield e


def collect(events):
    events = list(events)
    done = events[-1]
    assert isinstance(done, Done) and not any(isinstance(e, Done) for e in events[:-1])
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    notices = [e.text for e in events if isinstance(e, Notice)]
    return text, reasoning, notices, done, events


def test_streams_the_answer_in_pieces(engine):
    text, reasoning, notices, done, events = collect(engine.stream(HI, options(False)))
    assert text == ANSWER == done.answer
    assert reasoning == "" and notices == []
    assert sum(isinstance(e, TextDelta) for e in events) > 10  # streamed, not one block
    assert done.finish == "stop"


def test_thinking_goes_to_reasoning_events(engine):
    text, reasoning, _, done, events = collect(engine.stream(HI, options(True)))
    assert reasoning == REASONING == done.reasoning
    assert text == ANSWER
    kinds = [type(e) for e in events if isinstance(e, ReasoningDelta | TextDelta)]
    assert kinds.index(TextDelta) > kinds.index(ReasoningDelta)
    assert ReasoningDelta not in kinds[kinds.index(TextDelta) :]  # no reasoning after the answer began


def test_the_prompt_is_rendered_by_the_ggufs_template_with_enable_thinking(engine):
    on = engine.render(HI, think=True)
    off = engine.render(HI, think=False)
    assert on.endswith("<|im_start|>assistant\n<think>\n")
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_stops_at_the_end_token_and_reports_stats(engine):
    *_, done, _ = collect(engine.stream(HI, options(False)))
    stats = done.stats
    assert stats.generated_tokens == len(done.tokens) > 0
    assert engine.detokenize(list(done.tokens)) == ANSWER  # nothing after <|im_end|>
    assert stats.prompt_tokens == len(engine.tokenize(engine.render(HI, False), special=True))
    assert stats.ttft_s > 0 and stats.prompt_s > 0 and stats.generate_s > 0
    assert stats.prompt_tps > 0 and stats.generate_tps > 0
    assert stats.ctx_used == stats.prompt_tokens + stats.generated_tokens
    assert stats.n_ctx == 2048


def test_tokens_longer_than_32_bytes_are_decoded_whole(engine):
    *_, done, _ = collect(engine.stream(HI, options(False)))
    long_tokens = [t for t in done.tokens if len(engine.piece(t)) > 32]
    # Qwen's own tokens (not pieces in the padding rows): the answer has the real 39-space one
    assert long_tokens and all(t < SPECIAL_START for t in long_tokens)
    # llama-cpp-python's own detokenize (_internals.LlamaModel.detokenize) reads each token into a
    # 32-byte buffer and drops longer ones: the trap this engine avoids ...
    import llama_cpp

    lib_text = b""
    buf = llama_cpp.ctypes.create_string_buffer(32)
    for t in long_tokens:
        n = llama_cpp.llama_token_to_piece(engine.model.vocab, t, buf, 32, 0, False)
        lib_text += bytes(buf[:n])
    assert lib_text == b""
    # ... and ours keeps them, so the indented code arrives intact
    *_, done, _ = collect(engine.stream(HI, options(False)))
    assert " " * 40 + "return 1" in done.answer
    assert "=" * 36 in done.answer


def test_max_tokens_stops_with_a_notice(engine):
    text, _, notices, done, _ = collect(engine.stream(HI, options(False, max_tokens=3)))
    assert done.finish == "length" and done.stats.generated_tokens == 3
    assert ANSWER.startswith(text) and text
    assert any("--max-tokens" in n for n in notices)


def test_a_prompt_longer_than_the_context_is_refused_not_truncated(answer_model):
    with LlamaEngine(answer_model, LoadOptions(n_ctx=256, n_threads=2)) as small:
        long = [{"role": "user", "content": "word " * 400}]
        with pytest.raises(QwenlocalError) as err:
            list(small.stream(long, options(False)))
        assert err.value.code == ExitCode.CONTEXT_OVERFLOW
        assert "256" in err.value.message and "--ctx" in err.value.hint


def test_a_full_context_stops_generation_with_a_notice(answer_model):
    with LlamaEngine(answer_model, LoadOptions(n_ctx=256, n_threads=2)) as small:
        prompt_len = len(small.prompt_tokens(HI, False))
        # one token per digit (Qwen splits numbers into digits): leave room for a few of the answer's
        filler = [{"role": "user", "content": "7" * (245 - prompt_len + len(small.tokenize("hi")))}]
        assert len(small.prompt_tokens(filler, False)) == 245
        text, _, notices, done, _ = collect(small.stream(filler, options(False)))
        assert done.finish == "context"
        assert done.stats.ctx_used <= 256
        assert any("context" in n for n in notices)


def test_reasoning_budget_closes_the_think_block_and_the_model_answers(long_think_model):
    with LlamaEngine(long_think_model, LoadOptions(n_ctx=4096, n_threads=2)) as e:
        text, reasoning, notices, done, _ = collect(e.stream(HI, options(True, think_budget=20)))
        assert done.stats.reasoning_tokens == 20
        assert any("budget" in n for n in notices)
        assert text == "Done."
        assert len(reasoning) < len(LONG_REASONING)
        # without a budget it thinks all the way through
        _, reasoning, _, done, _ = collect(e.stream(HI, options(True)))
        assert reasoning == LONG_REASONING and done.answer == "Done."


def test_random_weights_generate_without_crashing(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=512, n_threads=2)) as e:
        assert e.architecture == "qwen35"
        *_, done, _ = collect(e.stream(HI, options(False, max_tokens=16, seed=1)))
        assert done.stats.generated_tokens <= 16 and done.finish in ("stop", "length")


def test_seed_makes_sampling_repeatable(random_model):
    with LlamaEngine(random_model, LoadOptions(n_ctx=512, n_threads=2)) as e:
        runs = [collect(e.stream(HI, options(False, max_tokens=12, seed=7)))[3].tokens for _ in range(2)]
        assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"", "not a GGUF"),
        (b"PK\x03\x04 this is a zip file", "not a GGUF"),
        (b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8, "cannot load"),
    ],
)
def test_bad_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(QwenlocalError) as err:
        LlamaEngine(path, LoadOptions(n_ctx=256, n_threads=1))
    assert err.value.code == ExitCode.MODEL_FILE
    assert message in err.value.message and err.value.hint


def test_a_truncated_file_is_reported_as_incomplete(tmp_path, answer_model):
    data = answer_model.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(QwenlocalError) as err:
        LlamaEngine(path, LoadOptions(n_ctx=256, n_threads=1))
    assert err.value.code == ExitCode.MODEL_FILE
    assert "corrupted or incomplete" in err.value.message


def test_a_gguf_without_chat_template_is_refused(tmp_path):
    path = ggufs.write_random(tmp_path / "nochat.gguf", template=False)
    with LlamaEngine(path, LoadOptions(n_ctx=256, n_threads=1)) as e:
        with pytest.raises(QwenlocalError) as err:
            list(e.stream(HI, options(False)))
    assert "no chat template" in err.value.message
