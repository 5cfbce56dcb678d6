"""llama.cpp's AMX kernels, and the builds of llama-cpp-python in which they crash.

On CPUs with Intel AMX (Xeon Sapphire Rapids and later), llama.cpp puts quantized weights in its
AMX buffer type and multiplies prompts with tile instructions, which first load a 64-byte tile
configuration (`_tile_loadconfig`). GCC before 14 declares that intrinsic's operand as 8 bytes
(`"m" (*(const void **) config)`), so the optimizer drops the stores that fill the rest of the
configuration: `ldtilecfg` then reads garbage and the first prompt dies with SIGSEGV (llama.cpp
issue #20824, ollama #17236; seen here: the compiled code zeroes 32 bytes, stores the palette, and
loads). llama-cpp-python compiles llama.cpp on install with the machine's compiler, so Debian 12
or Ubuntu 22.04 (GCC 12 / 11) on such a CPU get exactly that build.

Such a build runs without llama.cpp's extra weight buffers (`use_extra_bufts`: AMX and CPU
repacking), the one switch the C API has for it; llama-bench's `--repack 0` is the same setting.
Measured on a 2-core Sapphire Rapids VM, 0.8B Q4_K_M: prefill ~20% faster, decode ~15% slower
than repacking alone would give. A build by GCC 14 or clang keeps AMX.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

FIXED_GCC = 14  # GCC 14's amxtileintrin.h loads the configuration through a builtin


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (Linux's view of it) has AMX tiles."""
    if cpuinfo is None:
        if not sys.platform.startswith("linux"):
            return False
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    return re.search(r"^flags\s*:.*\bamx_tile\b", cpuinfo, re.M) is not None


def compiler(library: bytes) -> tuple[str, int] | None:
    """The compiler an ELF library's `.comment` names, with its major version: ("GCC", 12),
    ("clang", 18). A library built by clang names clang (the C runtime's objects add a GCC line)."""
    clang = re.search(rb"clang version (\d+)\.", library)
    if clang:
        return "clang", int(clang.group(1))
    gcc = re.search(rb"GCC: \([^)\x00]*\) (\d+)\.", library)
    return ("GCC", int(gcc.group(1))) if gcc else None


def broken_reason(cpu_amx: bool, built_with_amx: bool, built_by: tuple[str, int] | None) -> str | None:
    """Why llama.cpp's AMX kernels cannot run here (None: they can, or are not used)."""
    if not (cpu_amx and built_with_amx) or built_by is None:
        return None
    name, major = built_by
    if name != "GCC" or major >= FIXED_GCC:
        return None
    return (
        f"llama.cpp's AMX kernels are off: this llama-cpp-python was compiled by GCC {major}, which "
        f"miscompiles AMX tile setup (a crash on the first prompt); rebuild it with GCC {FIXED_GCC}+ "
        "or clang to use them"
    )


@cache
def amx_off(lib) -> str | None:
    """For the loaded llama.cpp: why its AMX kernels must stay off, or None."""
    if not cpu_has_amx():
        return None
    built_with_amx = b"AMX_INT8 = 1" in lib.llama_print_system_info()
    libraries = sorted((Path(lib.__file__).parent / "lib").glob("libggml-cpu*"))
    try:
        built_by = compiler(libraries[0].read_bytes()) if libraries else None
    except OSError:
        built_by = None
    return broken_reason(True, built_with_amx, built_by)
