"""The qwenlocal benchmark harness: `python -m bench` (see README.md, "Speed")."""


def filler(n_tokens: int) -> str:
    """Text of exactly n_tokens tokens for Qwen3.5's tokenizer, which the generated models share:
    " x" is one token, and a run of them never merges (the pre-tokenizer splits at each space)."""
    return " x" * n_tokens
