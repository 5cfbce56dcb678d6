"""Build llama.cpp's own `llama-bench` (and `llama-mtmd-cli`, for the image row) from the sources
the installed llama-cpp-python vendors.

The sdist of the installed llama-cpp-python version is fetched from PyPI (pip's cache makes this
free after the first time), its `vendor/llama.cpp` is configured the way llama-cpp-python builds
it (llama.cpp's defaults: Release, GGML_NATIVE, OpenMP, shared libraries), so both run the same
compiled code; only the `llama-bench` target is built. The result is cached per version in the
user cache dir (`<user cache dir>/qwenlocal/llama-bench/<version>/`; QWENLOCAL_BENCH_CACHE names
another folder), outside the checkout, so a fresh clone reuses an earlier build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

CACHE_ENV = "QWENLOCAL_BENCH_CACHE"


def cache_dir() -> Path:
    """Where builds (one folder per llama-cpp-python version) and the test models are kept."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qwenlocal")) / "llama-bench"


def _log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def sources(version: str) -> Path:
    """vendor/llama.cpp of llama-cpp-python `version`, unpacked from its sdist."""
    root = cache_dir() / version / "src"
    vendor = root / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if vendor.is_dir():
        return vendor
    root.mkdir(parents=True, exist_ok=True)
    _log(f"downloading the llama-cpp-python {version} sdist (for its vendored llama.cpp)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={version}", "-d", str(root)],
        check=True,
    )  # fmt: skip
    archive = next(root.glob("llama_cpp_python-*.tar.gz"))
    unpacked = root / "unpacking"  # renamed when complete: an interrupted unpack is not reused
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / f"llama_cpp_python-{version}").rename(root / f"llama_cpp_python-{version}")
    unpacked.rmdir()
    return vendor


def build(jobs: int = 2, target: str = "llama-bench") -> Path:
    """The binary of one llama.cpp target (`llama-bench`, `llama-mtmd-cli`), built once per version."""
    version = metadata.version("llama-cpp-python")
    binary = cache_dir() / version / "build" / "bin" / target
    if binary.exists():
        return binary
    src = sources(version)
    out = binary.parent.parent
    _log(f"building {target} from llama.cpp as vendored by llama-cpp-python {version} (minutes, once)")
    subprocess.run(
        ["cmake", "-S", str(src), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
         "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
         "-DLLAMA_BUILD_SERVER=OFF"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        ["cmake", "--build", str(out), "--target", target, "-j", str(jobs)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if not binary.exists():
        binary = next(out.rglob(target))
    return binary


def same_buffers(target: str = "llama-bench") -> list[str]:
    """The flags that give a llama.cpp tool the weight buffers qwenlocal's engine uses: none of
    llama.cpp's extra (AMX, repacked) buffers where its AMX code is miscompiled (engine/amx.py)."""
    from qwenlocal.engine import amx_kernels_off

    if amx_kernels_off() is None:
        return []
    return ["--repack", "0"] if target == "llama-bench" else ["--no-repack"]


if __name__ == "__main__":
    print(build())
