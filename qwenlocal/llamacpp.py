"""llama-cpp-python, imported once with its log captured, and the checks made before loading.

llama.cpp's own log goes to a buffer (printed with QWENLOCAL_DEBUG=1), so a failed load can be
explained in one line instead of a page of loader output.
"""

from __future__ import annotations

import ctypes
from collections import deque
from pathlib import Path

from .errors import Exit, QwenlocalError

GGUF_MAGIC = b"GGUF"
log_lines: deque[str] = deque(maxlen=50)
_log_callback = None  # keeps the ctypes callback alive


def llama_lib():
    """Import llama_cpp once, route its log into a buffer (shown with QWENLOCAL_DEBUG=1)."""
    global _log_callback
    import llama_cpp

    if _log_callback is None:
        from .config import debug

        show = debug()

        @llama_cpp.llama_log_callback
        def callback(level, text, user_data):
            line = text.decode("utf-8", "replace")
            log_lines.append(line)
            if show:
                import sys

                sys.stderr.write(line)

        _log_callback = callback
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def gpu_offload_supported() -> bool:
    return bool(llama_lib().llama_supports_gpu_offload())


def check_gguf(path: Path) -> None:
    """Refuse what llama.cpp cannot load, before it tries: missing files and non-GGUF files."""
    if not path.exists():
        raise QwenlocalError(
            f"model file not found: {path}",
            hint="check the path, or name a catalog model such as 2b (see `qwenlocal list`)",
            code=Exit.MODEL_FILE,
        )
    if not path.is_file():
        raise QwenlocalError(
            f"not a file: {path}", hint="give the path of a .gguf file", code=Exit.MODEL_FILE
        )
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise QwenlocalError(f"cannot read {path}: {exc.strerror}", code=Exit.MODEL_FILE) from None
    if magic != GGUF_MAGIC:
        raise QwenlocalError(
            f"{path} is not a GGUF model file",
            hint="qwenlocal runs GGUF files; get one with `qwenlocal pull`",
            code=Exit.MODEL_FILE,
        )


def load_error(path: Path) -> QwenlocalError:
    errors = [line.strip() for line in log_lines if "error" in line.lower() or "fail" in line.lower()]
    detail = next((e for e in reversed(errors) if "corrupt" in e or "bounds" in e or "truncat" in e), None)
    detail = detail or (errors[0] if errors else "llama.cpp could not load it")
    return QwenlocalError(
        f"cannot load {path}: {detail.split(': ', 1)[-1].removeprefix('error loading model: ')}",
        hint="the file may be truncated or corrupt: download it again (`qwenlocal pull`), "
        "or run with QWENLOCAL_DEBUG=1 for llama.cpp's log",
        code=Exit.MODEL_FILE,
    )
