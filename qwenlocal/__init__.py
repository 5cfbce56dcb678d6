"""qwenlocal: run Qwen3.5 small models locally (importing this does no work)."""

__version__ = "0.1.0"
