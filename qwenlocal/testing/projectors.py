"""Projector ("mmproj") GGUFs of the real `qwen3vl_merger` type, written without real weights.

Qwen3.5's vision encoder ships as a separate GGUF that llama.cpp's libmtmd loads as projector type
`qwen3vl_merger` (`tools/mtmd/clip.cpp`, `PROJECTOR_TYPE_QWEN3VL`; graph in `models/qwen3vl.cpp`):

- a ViT: two patch convolutions (`v.patch_embd.weight` and `.weight.1`, the two temporal frames of
  a still image, summed) with `v.patch_embd.bias`, learned absolute position embeddings
  (`v.position_embd.weight`, a square grid interpolated to the image), then `block_count` layers of
  LayerNorm (`ln1`, `ln2`, with bias), fused `attn_qkv` (with bias) under 2-D M-RoPE, `attn_out`,
  and a GELU MLP (`ffn_up`, `ffn_down`, with biases), then `v.post_ln`;
- the merger: 2x2 neighbouring patches concatenated (4 x hidden), `mm.0` (4h -> 4h), GELU, `mm.2`
  (4h -> the text model's embedding width).

`write_projector(path, out_embd)` writes a tiny random one; `QWEN35_0_8B_VISION` is the real
0.8B projector's shape (12 layers of 768, 3072 MLP, 48x48 position grid, output 1024), for the
benchmark. `write_colour_projector(path)` writes one whose embeddings say how red or blue each
2x2 patch block is, for a scripted model that answers by colour (`ggufs.write_scripted`'s
`by_colour`). Needs the `gguf` package (the test extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class VisionShape:
    n_embd: int = 64  # the ViT's width
    n_ff: int = 128
    n_head: int = 4
    n_layer: int = 2
    out_embd: int = 256  # the text model's embedding width (the tiny qwen35 test models': 256)
    patch_size: int = 16
    image_size: int = 64  # the position-embedding grid is (image_size / patch_size) squared
    merge: int = 2


# Qwen3.5-0.8B's vision tower (its config.json `vision_config`): depth 12, hidden 768, MLP 3072,
# 12 heads, patch 16, 2304 (48 x 48) position embeddings, spatial merge 2, out_hidden_size 1024.
QWEN35_0_8B_VISION = VisionShape(768, 3072, 12, 12, 1024, 16, 768, 2)

MEAN = [0.5, 0.5, 0.5]  # Qwen3-VL's preprocessor_config.json
STD = [0.5, 0.5, 0.5]


def tensors(shape: VisionShape, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """All tensors in numpy order (rows = ggml ne[1]); weights small, norms 1, biases 0."""
    h, ff, p = shape.n_embd, shape.n_ff, shape.patch_size
    merged = h * shape.merge * shape.merge
    grid = (shape.image_size // p) ** 2

    def mat(*dims: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(dims, dtype=np.float32) * scale).astype(dtype, copy=False)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, np.float32)

    t = {
        # the convolutions stay F16, as in the published files (ggml's im2col reads them so)
        "v.patch_embd.weight": mat(h, 3, p, p).astype(np.float16),
        "v.patch_embd.weight.1": mat(h, 3, p, p).astype(np.float16),
        "v.patch_embd.bias": zeros(h),
        "v.position_embd.weight": mat(grid, h).astype(np.float32),
        "v.post_ln.weight": np.ones(h, np.float32),
        "v.post_ln.bias": zeros(h),
        "mm.0.weight": mat(merged, merged),
        "mm.0.bias": zeros(merged),
        "mm.2.weight": mat(shape.out_embd, merged),
        "mm.2.bias": zeros(shape.out_embd),
    }
    for i in range(shape.n_layer):
        b = f"v.blk.{i}."
        t |= {
            b + "ln1.weight": np.ones(h, np.float32),
            b + "ln1.bias": zeros(h),
            b + "ln2.weight": np.ones(h, np.float32),
            b + "ln2.bias": zeros(h),
            b + "attn_qkv.weight": mat(3 * h, h),
            b + "attn_qkv.bias": zeros(3 * h),
            b + "attn_out.weight": mat(h, h),
            b + "attn_out.bias": zeros(h),
            b + "ffn_up.weight": mat(ff, h),
            b + "ffn_up.bias": zeros(ff),
            b + "ffn_down.weight": mat(h, ff),
            b + "ffn_down.bias": zeros(h),
        }
    return t


KAPPA = 4.0  # patch embedding gain: (220, 20, 20) red gives d = 6.3, near saturation


def colour_tensors(shape: VisionShape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights that compute, for each image token, how far its pixels lean to red or to blue.

    Through the real `qwen3vl_merger` graph (`tools/mtmd/models/qwen3vl.cpp`), with the pixels
    normalized to [-1, 1] (mean and std 0.5):

    - patch embedding: the two temporal convolutions (one still image feeds both) each add
      KAPPA/2 * (mean R - mean B) of the 16x16 patch to dimension 0 and its negative to
      dimension 1; the bias puts +1, -1 in dimensions 2, 3. So a patch is (d, -d, 1, -1, 0...),
      d = KAPPA * (mean R - mean B): its mean over the width is 0, whatever d is;
    - position embeddings zero; every ViT block's output projections (`attn_out`, `ffn_down`,
      with their biases) zero, so each block adds nothing and the residual passes through (its
      LayerNorms, attention and MLP still run, on random weights);
    - `post_ln` (LayerNorm, weight 1, bias 0): the mean is 0 already, so it only scales, by
      1 / std = sqrt(32 / (d^2 + 1)): dimension 0 becomes sqrt(32) * d / sqrt(d^2 + 1), a
      signed value that saturates at +-5.66 (the constant in 2, 3 keeps white patches, d = 0,
      at 0 instead of dividing noise by the epsilon);
    - merger: the 4 patches of a token side by side; `mm.0` sums their dimension 0 into two
      units, s and -s; GELU; `mm.2` writes GELU(s) - GELU(-s) = s (an identity of any GELU
      x * f(x) with f(x) + f(-x) = 1, as tanh's and erf's are; ggml's CPU one reads an F16
      table below |x| = 10, so to F16 precision there, exactly past it) along `hue`, and
      GELU(s) + GELU(-s) (about |s| once |s| > 2) along `colourful`, and its bias 1.0 along
      `seen` (`ggufs.image_directions`). A saturated red token (4 patches): s = 22.35.
    """
    from .ggufs import image_directions

    t = tensors(shape, rng)
    h, p = shape.n_embd, shape.patch_size
    if h < 4 or shape.out_embd < 7:
        raise ValueError("a colour projector needs a ViT of 4 or more and an output of 7 or more")
    conv = np.zeros((h, 3, p, p), np.float32)
    per_pixel = KAPPA / 2 / (p * p)  # two convolutions of the same image, summed
    conv[0, 0], conv[0, 2] = per_pixel, -per_pixel  # + red - blue
    conv[1] = -conv[0]
    t["v.patch_embd.weight"] = conv.astype(np.float16)
    t["v.patch_embd.weight.1"] = conv.astype(np.float16)
    t["v.patch_embd.bias"][2:4] = 1.0, -1.0
    t["v.position_embd.weight"][:] = 0
    for name in t:
        if name.startswith("v.blk.") and name.split(".")[-2] in ("attn_out", "ffn_down"):
            t[name][:] = 0
    merged = h * shape.merge * shape.merge
    mm0 = np.zeros((merged, merged), np.float32)
    mm0[0, 0::h] = 1.0  # s: dimension 0 of each of the 4 patches
    mm0[1, 0::h] = -1.0  # -s
    mm2 = np.zeros((shape.out_embd, merged), np.float32)
    d = image_directions(shape.out_embd)
    mm2[d["hue"], :2] = 1.0, -1.0
    mm2[d["colourful"], :2] = 1.0, 1.0
    t["mm.0.weight"], t["mm.2.weight"] = mm0, mm2
    t["mm.0.bias"][:] = 0
    t["mm.2.bias"][:] = 0
    t["mm.2.bias"][d["seen"]] = 1.0
    return t


def write_projector(
    path: Path | str, shape: VisionShape = VisionShape(), seed: int = 0, f16: bool = False
) -> Path:
    """A random projector of the real type; `out_embd` must match the text model's width."""
    rng = np.random.default_rng(seed)
    t = tensors(shape, rng, np.float16 if f16 else np.float32)
    return _write(Path(path), shape, t, "tiny-random-mmproj", f16)


def write_colour_projector(path: Path | str, shape: VisionShape = VisionShape(), seed: int = 0) -> Path:
    """A projector of the real type whose image tokens say how red or blue they are (see
    `colour_tensors`), for a scripted model with `by_colour` replies of the same width."""
    return _write(Path(path), shape, colour_tensors(shape, np.random.default_rng(seed)), "tiny-colour-mmproj")


def _write(
    path: Path, shape: VisionShape, arrays: dict[str, np.ndarray], name: str, f16: bool = False
) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), "clip")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "qwen3vl_merger")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.embedding_length", shape.n_embd)
    w.add_uint32("clip.vision.feed_forward_length", shape.n_ff)
    w.add_uint32("clip.vision.block_count", shape.n_layer)
    w.add_uint32("clip.vision.attention.head_count", shape.n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", shape.out_embd)
    w.add_uint32("clip.vision.image_size", shape.image_size)
    w.add_uint32("clip.vision.patch_size", shape.patch_size)
    w.add_uint32("clip.vision.spatial_merge_size", shape.merge)
    w.add_array("clip.vision.image_mean", MEAN)
    w.add_array("clip.vision.image_std", STD)
    for tname, array in arrays.items():
        w.add_tensor(tname, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_png(path: Path | str, width: int = 64, height: int = 64, colour=(200, 30, 30)) -> Path:
    """A real PNG file: a square of `colour` on white (written with Pillow)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.paste(colour, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    image.save(path, format="PNG")
    return Path(path)


def write_image(path: Path | str, fmt: str, width: int = 64, height: int = 64) -> Path:
    """A real image file in `fmt` (PNG, JPEG, GIF, BMP, WEBP), written with Pillow."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (40, 90, 200))
    image.save(path, format=fmt)
    return Path(path)
