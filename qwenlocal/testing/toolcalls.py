"""Qwen3.5's tool-call text (Qwen3-Coder's XML form), as a model writes it: for scripted replies."""

from __future__ import annotations


def tool_call(name: str, **args: object) -> str:
    """`<tool_call><function=NAME><parameter=...>` for one call; join several for one reply."""
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"
