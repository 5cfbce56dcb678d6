"""The few facts `show` needs from a GGUF's header, read in one pass that skips the big arrays.

gguf-py's `GGUFReader` builds a numpy view of every item of every metadata array: for a Qwen3.5
file's 248,320 tokens and 247,587 merges that takes tens of seconds. Here an array is stepped
over by its size (a string array by its strings' lengths), and only scalars and strings are kept.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

# GGUF value types: the struct format of each fixed-size one
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class Header:
    fields: dict[str, object]  # scalars and strings; an array as its length
    tensors: dict[str, int]  # name -> number of elements


class _Cursor:
    def __init__(self, buf) -> None:
        self.buf, self.at = buf, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.at + n > len(self.buf):
            raise ValueError("metadata cut short")
        text = bytes(self.buf[self.at : self.at + n]).decode("utf-8", "replace")
        self.at += n
        return text

    def value(self, vtype: int):
        if vtype in SCALARS:
            return self.take(SCALARS[vtype])
        if vtype == STRING:
            return self.string()
        if vtype != ARRAY:
            raise ValueError(f"unknown metadata type {vtype}")
        item, count = self.take("I"), self.take("Q")
        if item in SCALARS:
            self.at += count * struct.calcsize(SCALARS[item])
        elif item == STRING:
            unpack, buf = struct.Struct("<Q").unpack_from, self.buf
            for _ in range(count):
                self.at += 8 + unpack(buf, self.at)[0]
        else:
            for _ in range(count):
                self.value(item)
        if self.at > len(self.buf):
            raise ValueError("metadata cut short")
        return count


def read_header(path: Path) -> Header:
    """Raises ValueError for a file that is not a GGUF or whose header is cut short."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        c = _Cursor(buf)
        c.at = 4
        try:
            if c.take("I") < 2:
                raise ValueError("GGUF version 1 is not supported")
            n_tensors, n_fields = c.take("Q"), c.take("Q")
            fields = {}
            for _ in range(n_fields):
                key = c.string()
                fields[key] = c.value(c.take("I"))
            tensors, end = {}, 0
            for _ in range(n_tensors):
                name = c.string()
                elements = 1
                for _ in range(c.take("I")):
                    elements *= c.take("Q")
                qtype, offset = c.take("I"), c.take("Q")
                tensors[name] = elements
                end = max(end, offset + _nbytes(qtype, elements))
            align = fields.get("general.alignment", 32)
            if -(-c.at // align) * align + end > len(buf):
                raise ValueError("tensor data cut short")
        except struct.error:
            raise ValueError("metadata cut short") from None
    return Header(fields, tensors)


def _nbytes(qtype: int, elements: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    except ValueError:
        raise ValueError(f"unknown tensor type {qtype}") from None
    return elements // block * size
