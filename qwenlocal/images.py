"""Images as input: recognised by their magic bytes, checked by the engine's own decoder.

`load(data, name)` returns an `Image` or raises QwenlocalError (exit 7) with the reason. "Supported"
means what libmtmd (llama.cpp's multimodal library, through llama-cpp-python) can decode: its
stb_image decoder reads PNG, JPEG, GIF (the first frame) and BMP; WebP it decodes only through an
installed `ffmpeg`. HEIC, AVIF, TIFF and SVG are refused by name, anything else as "not an image".

Before libmtmd sees an image, Pillow reads its header and decodes it in full: its size is checked
from the header first (a 0.7 MB PNG can claim 26000x26000 pixels, 2 GB decoded: refused, never
decoded), then the full decode catches what stb_image lets through (a JPEG cut inside its scan
data, which stb_image fills with grey). Shapes Qwen's own preprocessing refuses (one side more
than 200 times the other) are refused here, with the size, rather than failing inside libmtmd.

A message's `content` is a str, or a list of parts `{"type": "text", "text": str}` and
`{"type": "image", "image": Image}` (`parts()`, `text_of()` and `images_of()` read either form).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .bounded import TooLarge, read_file
from .errors import ExitCode, QwenlocalError

MAX_BYTES = 64 << 20  # an image file larger than this is refused before decoding
# Pixels an image may have: a 50-megapixel photo decodes to 150 MB of RGB (twice: Pillow's check,
# then libmtmd); the projector scales every image down to its token budget (a megapixel or so)
MAX_PIXELS = 50_000_000
MAX_RATIO = 200  # Qwen's smart_resize refuses a longer side more than 200 times the shorter

DECODED = ("PNG", "JPEG", "GIF", "BMP")  # stb_image, inside libmtmd
NAMED_UNSUPPORTED = ("HEIC", "AVIF", "TIFF", "SVG")
HINT = "convert it to PNG or JPEG first, e.g. `magick photo.heic photo.png` (ImageMagick)"


@dataclass(frozen=True)
class Image:
    data: bytes = field(repr=False)
    name: str  # the file name, or "stdin"
    format: str  # PNG, JPEG, GIF, BMP, WEBP
    width: int
    height: int
    sha256: str = field(default="", repr=False)


def sniff(data: bytes) -> str | None:
    """The image format its first bytes announce, or None."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def is_image(data: bytes) -> bool:
    """Whether the bytes claim to be an image (supported or not): stdin is then not text."""
    return sniff(data) is not None


def load(data: bytes, name: str) -> Image:
    """Validate an image: its format by magic bytes, then a full decode by libmtmd's decoder."""
    fmt = sniff(data)
    if fmt is None:
        raise QwenlocalError(
            f"{name} is not an image qwenlocal can read",
            hint="give a PNG, JPEG, GIF or BMP file",
            code=ExitCode.BAD_INPUT,
        )
    if fmt in NAMED_UNSUPPORTED:
        message = f"{name} is {fmt}, which the image decoder cannot read"
        raise QwenlocalError(message, hint=HINT, code=ExitCode.BAD_INPUT)
    if len(data) > MAX_BYTES:
        raise too_large(name)
    width, height = check_pixels(data, name, fmt)
    if fmt == "WEBP":
        if shutil.which("ffmpeg") is None:
            raise QwenlocalError(
                f"{name} is WebP, which llama.cpp's decoder reads only through ffmpeg (not installed)",
                hint="install ffmpeg, or " + HINT.replace("photo.heic", "photo.webp"),
                code=ExitCode.BAD_INPUT,
            )
        # decoded by the engine through ffmpeg, with its own context
    else:
        width, height = decode_size(data, name, fmt)
    return Image(data, name, fmt, width, height, hashlib.sha256(data).hexdigest())


def too_large(name: str) -> QwenlocalError:
    return QwenlocalError(
        f"{name} is larger than {MAX_BYTES >> 20} MiB; images up to {MAX_BYTES >> 20} MiB are read",
        hint="scale it down first: the model sees at most a few megapixels anyway",
        code=ExitCode.BAD_INPUT,
    )


def corrupt(name: str, fmt: str) -> QwenlocalError:
    return QwenlocalError(
        f"{name} is a corrupt or truncated {fmt} file (the image decoder could not read it)",
        hint="check the file opens in an image viewer, or export it again",
        code=ExitCode.BAD_INPUT,
    )


def check_pixels(data: bytes, name: str, fmt: str) -> tuple[int, int]:
    """The image's size from its header, refused (exit 7) when it is too many pixels or too long a
    shape for the projector; then a full decode by Pillow, with truncated files an error."""
    import io

    from PIL import Image as Pillow

    # Pillow's own bomb check (refusing at twice its default of 89 megapixels, without the size) is
    # replaced by the one below; opening reads the header only
    Pillow.MAX_IMAGE_PIXELS = None
    try:
        picture = Pillow.open(io.BytesIO(data), formats=[fmt])
    except (OSError, SyntaxError, ValueError, EOFError):
        raise corrupt(name, fmt) from None
    with picture:
        width, height = picture.size
        if width * height > MAX_PIXELS:
            raise QwenlocalError(
                f"{name} is {width}x{height} pixels; images up to {MAX_PIXELS // 1_000_000} "
                "megapixels are read",
                hint="scale it down first (e.g. `magick big.png -resize 4000x4000 small.png`): "
                "the model sees about a megapixel anyway",
                code=ExitCode.BAD_INPUT,
            )
        if max(width, height) > MAX_RATIO * min(width, height):
            raise QwenlocalError(
                f"{name} is {width}x{height} pixels: one side is more than {MAX_RATIO} times the other, "
                "which Qwen's image encoder cannot take",
                hint="crop it, or pad it to a less extreme shape",
                code=ExitCode.BAD_INPUT,
            )
        try:
            picture.load()  # the whole image: a cut-off file is an error (LOAD_TRUNCATED_IMAGES off)
        except (OSError, SyntaxError, ValueError, EOFError):
            raise corrupt(name, fmt) from None
    return width, height


def decode_size(data: bytes, name: str, fmt: str) -> tuple[int, int]:
    """Decode with libmtmd's own decoder (stb_image, as the engine will); its size, or exit 7."""
    from .engine.vision import decoded_size

    size = decoded_size(data)
    if size is None:
        raise corrupt(name, fmt)
    return size


def read(path: Path | str) -> Image:
    """An image file, validated; exit 7 for a missing or unreadable one."""
    path = Path(path).expanduser()
    try:
        data = read_file(path, MAX_BYTES)
    except TooLarge:
        raise too_large(str(path)) from None
    return load(data, str(path))


# -- messages whose content is a list of parts -------------------------------------------------


def parts(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def images_of(messages: list[dict]) -> list[Image]:
    """Every image of the conversation, in order."""
    return [
        p["image"]
        for m in messages
        if not isinstance(m.get("content"), str)
        for p in parts(m.get("content"))
        if p.get("type") == "image"
    ]


def text_of(content) -> str:
    """The text of a message's content, images left out."""
    return "".join(p.get("text", "") for p in parts(content) if p.get("type") == "text")


def with_images(text: str, images: list[Image]) -> str | list[dict]:
    """A user message's content: the images first, then the text (as Qwen's examples put them)."""
    if not images:
        return text
    return [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": text}]


# -- images kept in a saved conversation --------------------------------------------------------

_seen: dict[str, Image] = {}  # by sha256: what this process has read, so a turn never re-reads


def ref(image: Image) -> dict:
    """What a saved conversation keeps of an image: where it was and what it was."""
    _seen[image.sha256] = image
    return {"path": image.name, "sha256": image.sha256}


def attached(refs: list[dict], text: str) -> str | list[dict]:
    """A saved user message's content for the model: its images (read again from their paths
    when this process has not seen them; one that changed or is gone is said so in the text)."""
    pictures, missing = [], []
    for r in refs:
        image = _seen.get(r.get("sha256", ""))
        if image is None:
            try:
                image = read(r.get("path", ""))
            except QwenlocalError:
                image = None
            if image is not None and image.sha256 != r.get("sha256"):
                image = None
        if image is None:
            missing.append(r.get("path", "?"))
        else:
            ref(image)
            pictures.append(image)
    note = "".join(f"[image {path} is no longer available]\n" for path in missing)
    return with_images(note + text, pictures)
