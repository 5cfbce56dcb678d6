"""Model files in the Hugging Face cache (shared with other tools: honours HF_HOME, HF_HUB_CACHE)."""

from __future__ import annotations

from pathlib import Path

from .catalog import ModelSpec, QuantFile


def cached_path(quant: QuantFile) -> Path | None:
    """The complete file in the HF cache, or None. Partial downloads are never returned."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id=quant.repo, filename=quant.file)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def find_local(model: ModelSpec, quant: QuantFile) -> Path | None:
    """The default source's file, else the same quantization from an alternate publisher."""
    candidates = [quant] + [alt for alt in model.alternates if alt.quant == quant.quant]
    for candidate in candidates:
        path = cached_path(candidate)
        if path is not None:
            return path
    return None
