from pathlib import Path

import pytest

from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.models.catalog import CatalogTarget, FileTarget, load

CAT = load()


def test_four_sizes_with_the_required_quantizations():
    assert [m.display for m in CAT.models.values()] == [
        "Qwen3.5-0.8B",
        "Qwen3.5-2B",
        "Qwen3.5-4B",
        "Qwen3.5-9B",
    ]
    for spec in CAT.models.values():
        for q in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"):
            qf = spec.quants[q]
            assert qf.repo == f"unsloth/{spec.display}-GGUF"
            assert qf.file == f"{spec.display}-{q}.gguf"
            assert qf.bytes > 300_000_000
        assert spec.alternates, "every size has an alternate source"
        assert spec.context_length == 262144


def test_exact_sizes_from_the_hub():
    assert CAT.models["qwen3.5-0.8b"].quants["Q4_K_M"].bytes == 532_517_120
    assert CAT.models["qwen3.5-9b"].quants["Q4_K_M"].bytes == 5_680_522_464
    assert CAT.models["qwen3.5-2b"].quants["Q8_0"].approx


def test_model_card_sampling_and_thinking_defaults():
    small, large = CAT.models["qwen3.5-0.8b"], CAT.models["qwen3.5-9b"]
    assert not small.thinking_default and large.thinking_default
    assert small.sampling(False).presence_penalty == 2.0
    assert large.sampling(False).temperature == 0.7 and large.sampling(True).top_p == 0.95
    assert all(s.sampling(t).top_k == 20 for s in CAT.models.values() for t in (True, False))


@pytest.mark.parametrize(
    "name, model, quant",
    [
        ("0.8b", "qwen3.5-0.8b", None),
        ("qwen3.5-9b", "qwen3.5-9b", None),
        ("9b:q8_0", "qwen3.5-9b", "Q8_0"),
        ("4B:Q4_K_M", "qwen3.5-4b", "Q4_K_M"),
        ("qwen3.5:2b", "qwen3.5-2b", None),
        ("qwen3.5-2b:q6_k", "qwen3.5-2b", "Q6_K"),
    ],
)
def test_names_and_aliases(name, model, quant):
    target = CAT.resolve(name)
    assert isinstance(target, CatalogTarget)
    assert target.spec.name == model and target.quant == quant


@pytest.mark.parametrize("name", ["./model.gguf", "/abs/x.gguf", "~/m.gguf", "dir/file", "weights.GGUF"])
def test_paths(name):
    target = CAT.resolve(name)
    assert isinstance(target, FileTarget) and target.path == Path(name).expanduser()


@pytest.mark.parametrize(
    "name, words", [("7b", "0.8b, 2b, 4b, 9b"), ("9bb", "did you mean"), ("4b:q2", "q4_k_m")]
)
def test_unknown_names_list_the_valid_ones(name, words):
    with pytest.raises(QwenlocalError) as err:
        CAT.resolve(name)
    assert err.value.code == ExitCode.UNKNOWN_MODEL
    assert words in err.value.message + err.value.hint
