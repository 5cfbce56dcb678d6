"""The engine: a loaded model that answers conversations as a stream of events.

`Engine` is what callers are typed against; `LlamaEngine` runs llama.cpp through llama-cpp-python's
C API, which never leaves this package. Importing it does not import llama_cpp: `llama_lib()` does,
when a model is first loaded.
"""

from .base import Engine, GenerateOptions, LoadOptions, with_temperature
from .generate import BUDGET_CLOSE
from .llama import LlamaEngine
from .llamacpp import amx_kernels_off, check_gguf, gpu_offload_supported

__all__ = [
    "BUDGET_CLOSE",
    "Engine",
    "GenerateOptions",
    "LlamaEngine",
    "LoadOptions",
    "amx_kernels_off",
    "check_gguf",
    "gpu_offload_supported",
    "with_temperature",
]
