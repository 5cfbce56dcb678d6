"""llama.cpp's AMX kernels, off where the build miscompiles them (engine/amx.py).

The end-to-end test runs a K-quant model, which llama.cpp multiplies with AMX tiles on a CPU that
has them: on such a CPU with a GCC-12 build of llama-cpp-python (as on Debian 12), it died with
SIGSEGV before the fix. Elsewhere it checks that K-quants run at all.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from qwenlocal.engine import amx
from qwenlocal.testing import ggufs

XEON = "processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni amx_bf16 amx_tile amx_int8 avx_vnni\n"
EPYC = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
GCC12 = b"\x00GCC: (Debian 12.2.0-14+deb12u1) 12.2.0\x00"
GCC14 = b"\x00GCC: (GNU) 14.2.1 20240910\x00"
CLANG = b"\x00GCC: (Debian 12.2.0-14) 12.2.0\x00Debian clang version 18.1.8\x00"


def test_the_cpu_flag_is_read_from_cpuinfo():
    assert amx.cpu_has_amx(XEON)
    assert not amx.cpu_has_amx(EPYC)
    assert not amx.cpu_has_amx("model name\t: amx_tile in a name is no flag\n")


def test_the_compiler_is_read_from_the_comment_section():
    assert amx.compiler(GCC12) == ("GCC", 12)
    assert amx.compiler(GCC14) == ("GCC", 14)
    assert amx.compiler(CLANG) == ("clang", 18)  # the C runtime's objects add a GCC line
    assert amx.compiler(b"no comment") is None


@pytest.mark.parametrize(
    ("cpu", "built_with_amx", "by", "off"),
    [
        (True, True, ("GCC", 12), True),
        (True, True, ("GCC", 11), True),
        (True, True, ("GCC", 14), False),
        (True, True, ("clang", 18), False),
        (True, False, ("GCC", 12), False),  # a build without AMX code (GGML_NATIVE=OFF)
        (False, True, ("GCC", 12), False),  # an AMX build on another CPU never runs that code
        (True, True, None, False),
    ],
)
def test_amx_is_off_only_for_a_miscompiled_build_on_an_amx_cpu(cpu, built_with_amx, by, off):
    reason = amx.broken_reason(cpu, built_with_amx, by)
    assert (reason is not None) == off
    if off:
        assert f"GCC {by[1]}" in reason
        assert "rebuild it with GCC 14+ or clang" in reason


def test_doctor_says_when_amx_is_off(cli):
    from qwenlocal.engine import amx_kernels_off

    note = amx_kernels_off()
    out = cli("doctor").stdout.decode()
    if note is None:
        assert "AMX" not in out
    else:
        assert f"note:     {note}\n" in out


@pytest.fixture(scope="session")
def k_quant_model(random_model, models_dir):
    return ggufs.quantize(random_model, models_dir / "random-q4_k_m.gguf", "Q4_K_M", threads=2)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_k_quant_model_reads_a_prompt(k_quant_model):
    code = (
        "from qwenlocal.engine import LlamaEngine, LoadOptions\n"
        f"with LlamaEngine({str(k_quant_model)!r}, LoadOptions(n_ctx=512, n_threads=2)) as e:\n"
        "    e.model.eval(list(range(1000, 1040)))\n"
        "print('evaluated')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == b"evaluated\n"
