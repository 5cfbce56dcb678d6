"""Hostile input that used to take the memory or hang: images and stdin are read up to their limit
and no further, paths that are not regular files are refused before they are opened, images are
sized from their header before they are decoded (a decompression bomb never is), a JPEG cut inside
its scan data is refused, and shapes the projector cannot take are a clear error. End to end where
the point is memory or a hang (a child process, its peak RSS measured), in-process otherwise."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from qwenlocal import images
from qwenlocal.bounded import TooLarge, read_file, read_stream
from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.testing import ggufs, projectors
from qwenlocal.testing.cli import run as run_in_process

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Runs a command and prints its exit status and peak RSS: Linux carries a parent's peak RSS into
# its forked children (through exec), and the test process may be large by now.
LAUNCHER = (
    "import json, os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, "
    "stderr=subprocess.PIPE); err = p.stderr.read(); _, status, usage = os.wait4(p.pid, 0); "
    "print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss // 1024, err.decode()]))"
)


def measured(args: list[str], stdin=subprocess.DEVNULL, timeout: float = 60) -> tuple[int, int, str]:
    """`qwenlocal ARGS` in a child: its exit code, its peak RSS in MiB, its stderr."""
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "qwenlocal", *args]
    done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=timeout)
    code, peak_mib, err = json.loads(done.stdout)
    return code, peak_mib, err


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int = 26000, height: int = 26000) -> Path:
    """A valid 1-bit greyscale PNG of width x height white-free pixels: tens of KB on disk, 2 GB
    once decoded to RGB (as libmtmd's decoder does)."""
    row = b"\x00" * (1 + -(-width // 8))
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row * 1000) for _ in range(height // 1000))
    body += packer.compress(row * (height % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("hostile")
    out = {"bomb": png_bomb(folder / "bomb.png")}
    out["sparse"] = folder / "sparse.png"
    with out["sparse"].open("wb") as f:  # 4 GiB on paper, a few bytes on disk
        f.write(PNG_SIGNATURE)
        f.truncate(4 << 30)
    noise = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    whole = io.BytesIO()
    noise.save(whole, format="JPEG", quality=90)
    out["jpeg"] = folder / "whole.jpg"
    out["jpeg"].write_bytes(whole.getvalue())
    out["cut"] = folder / "cut.jpg"
    out["cut"].write_bytes(whole.getvalue()[: len(whole.getvalue()) * 2 // 3])  # inside the scan data
    out["thin"] = projectors.write_png(folder / "thin.png", 1, 100000)
    out["fifo"] = folder / "pipe.png"
    os.mkfifo(out["fifo"])
    return out


# -- the guard --------------------------------------------------------------------------------


def test_read_stream_stops_one_byte_past_the_limit():
    class Zeros(io.RawIOBase):  # a pipe that never ends
        reads = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Zeros.reads += len(buffer)
            buffer[:] = b"\x00" * len(buffer)
            return len(buffer)

    with pytest.raises(TooLarge) as over:
        read_stream(io.BufferedReader(Zeros()), 3 << 20)
    assert len(over.value.data) == (3 << 20) + 1
    assert Zeros.reads < (4 << 20)  # what was buffered ahead, at most
    assert read_stream(io.BytesIO(b"abc"), 3) == b"abc"


@pytest.mark.parametrize("what", ["fifo", "dir", "device"])
def test_read_file_refuses_what_is_not_a_regular_file_without_opening_it(hostile, tmp_path, what):
    path = {"fifo": hostile["fifo"], "dir": tmp_path, "device": Path("/dev/zero")}[what]
    started = time.monotonic()
    with pytest.raises(QwenlocalError) as refused:
        read_file(path, 100)  # a FIFO opened for reading would block here, with no writer
    assert time.monotonic() - started < 5
    assert refused.value.code == ExitCode.BAD_INPUT
    kind = {"fifo": "a pipe (FIFO)", "dir": "a directory", "device": "a device"}[what]
    assert refused.value.message == f"{path} is {kind}, not a file"


# -- `run --image` and stdin, end to end: bounded memory, no hang ----------------------------


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("/dev/zero", "/dev/zero is a device, not a file"),
        ("fifo", "pipe.png is a pipe (FIFO), not a file"),
        ("sparse", "sparse.png is larger than 64 MiB; images up to 64 MiB are read"),
        ("bomb", "bomb.png is 26000x26000 pixels; images up to 50 megapixels are read"),
    ],
)
def test_run_image_reads_no_more_than_its_limit(random_model, hostile, image, words):
    path = hostile.get(image, image)
    code, peak_mib, err = measured(["run", "-m", str(random_model), "--image", str(path), "what is it?"])
    assert code == ExitCode.BAD_INPUT, err
    assert err.startswith("qwenlocal: error: ") and words in err, err
    assert "Traceback" not in err and err.count("\n") == 1  # one line, its hint in it
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB"


def test_an_endless_png_on_stdin_is_cut_at_the_limit(random_model):
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "qwenlocal", "run"]
    command += ["-m", str(random_model), "describe"]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed():
        try:
            child.stdin.write(PNG_SIGNATURE)
            block = b"\x00" * (1 << 20)
            while True:
                child.stdin.write(block)
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = child.stdout.read()  # (communicate() would close stdin under the writer)
    child.wait(120)
    code, peak_mib, err = json.loads(out)
    assert code == ExitCode.BAD_INPUT, err
    assert "qwenlocal: error: stdin is larger than 64 MiB; images up to 64 MiB are read" in err
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB"


def test_dev_zero_on_stdin_is_binary_and_bounded(random_model):
    with open("/dev/zero", "rb") as zeros:
        code, peak_mib, err = measured(["run", "-m", str(random_model), "summarize"], stdin=zeros)
    assert code == ExitCode.BAD_INPUT and "stdin looks like binary data, not text" in err, err
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB"


def test_text_on_stdin_over_the_limit_is_more_than_any_context(monkeypatch, random_model):
    monkeypatch.setattr("qwenlocal.prompt_input.MAX_STDIN", 1 << 20)
    done = run_in_process("run", "-m", str(random_model), "go", input=b"word " * (300 << 10))
    assert done.code == ExitCode.CONTEXT_OVERFLOW
    assert done.stderr.decode().startswith("qwenlocal: error: stdin is over 1 MiB: more text than any")


# -- images: decoded only when their header allows; truncated and impossible shapes refused ----


def test_a_bomb_is_refused_from_its_header(hostile):
    started = time.monotonic()
    with pytest.raises(QwenlocalError, match=r"26000x26000 pixels; images up to 50 megapixels") as bomb:
        images.load(hostile["bomb"].read_bytes(), "bomb.png")
    assert bomb.value.code == ExitCode.BAD_INPUT and time.monotonic() - started < 2


def test_a_jpeg_cut_inside_its_scan_data_is_truncated(hostile):
    whole = images.read(hostile["jpeg"])
    assert (whole.format, whole.width, whole.height) == ("JPEG", 256, 256)
    with pytest.raises(QwenlocalError, match="cut.jpg is a corrupt or truncated JPEG file") as cut:
        images.read(hostile["cut"])
    assert cut.value.code == ExitCode.BAD_INPUT


def test_an_extreme_aspect_ratio_is_refused_with_its_size(hostile, random_model):
    done = run_in_process("run", "-m", str(random_model), "--image", str(hostile["thin"]), "what?")
    assert done.code == ExitCode.BAD_INPUT
    err = done.stderr.decode()
    assert "thin.png is 1x100000 pixels: one side is more than 200 times the other" in err, err
    assert "Traceback" not in err


def test_long_but_allowed_shapes_reach_the_model(random_model, tmp_path):
    """The limit is Qwen's: a 1:200 image (and a 1x1 one) is prepared by libmtmd and answered."""
    from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
    from qwenlocal.events import Done
    from qwenlocal.models.catalog import Sampling

    projector = projectors.write_projector(tmp_path / "mmproj.gguf")
    shapes = [(8, 1600), (1600, 8), (1, 1)]
    pictures = [images.read(projectors.write_png(tmp_path / f"{w}x{h}.png", w, h)) for w, h in shapes]
    with LlamaEngine(random_model, LoadOptions(2048, 2, image_tokens=64), projector) as engine:
        for picture in pictures:
            content = images.with_images("What is this?", [picture])
            options = GenerateOptions(Sampling(0.0, 1.0, 1, 0.0, 0.0, 1.0), max_tokens=2, ignore_eos=True)
            done = [e for e in engine.stream([{"role": "user", "content": content}], options)][-1]
            assert isinstance(done, Done) and done.stats.image_tokens > 0


def test_the_server_answers_a_bomb_and_a_thin_image_with_400(answer_model, hostile):
    import base64

    import httpx

    from qwenlocal.testing.server import serving

    def post(server, path: Path) -> httpx.Response:
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what?"}]
        body = {"messages": [{"role": "user", "content": content}]}
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)

    with serving(answer_model) as server:
        bomb, thin = post(server, hostile["bomb"]), post(server, hostile["thin"])
    assert bomb.status_code == 400 and "26000x26000 pixels" in bomb.json()["error"]["message"]
    assert thin.status_code == 400 and "1x100000 pixels" in thin.json()["error"]["message"]


def test_a_projector_for_another_size_is_one_line_naming_both(random_model, tmp_path):
    other = projectors.write_projector(tmp_path / "mmproj-0.8b.gguf", projectors.VisionShape(out_embd=1024))
    picture = projectors.write_png(tmp_path / "red.png")
    done = run_in_process(
        "run", "-m", str(random_model), "--mmproj", str(other), "--image", str(picture), "?"
    )
    assert done.code == ExitCode.MODEL_FILE
    err = done.stderr.decode()
    assert err == (
        "qwenlocal: error: cannot load the projector mmproj-0.8b.gguf: it is for Qwen3.5-0.8B, "
        "width 1024, not for this model (a model of width 256) (hint: use the mmproj GGUF of the "
        "same model size: "
        "`qwenlocal pull SIZE --vision` gets both)\n"
    )


# -- chat and run: what the small fixes say ----------------------------------------------------


def test_a_piped_chat_line_that_is_not_utf8_is_exit_7_with_its_line(answer_model, isolated_home):
    done = run_in_process("chat", "-m", str(answer_model), "--no-think", input=b"first\nb\xe4d\nthird\n")
    assert done.code == ExitCode.BAD_INPUT, done.stderr
    err = done.stderr.decode()
    assert "qwenlocal: error: line 2 of stdin is not valid UTF-8" in err and "Traceback" not in err
    saved = list((isolated_home / ".local/share/qwenlocal/conversations").glob("*.json"))
    assert len(saved) == 1  # what was answered before the bad line is kept
    messages = json.loads(saved[0].read_text())["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first"]


def test_a_kv_cache_the_head_size_forbids_says_so(tmp_path):
    model = ggufs.write_random(tmp_path / "odd-heads.gguf", ggufs.Shape(head_dim=80))
    done = run_in_process("run", "-m", str(model), "--kv-cache", "q8_0", "--ctx", "1024", "hi")
    err = done.stderr.decode()
    assert done.code == ExitCode.USAGE, err
    assert (
        "odd-heads.gguf cannot use a q8_0 KV cache: its attention heads have 80 values, "
        "not a multiple of q8_0's block of 32"
    ) in err
    assert "short of memory" not in err


def test_the_shorten_hint_never_exceeds_what_the_model_reads():
    from qwenlocal.models.sizing import _too_long

    refused = _too_long(40000, 32768, "f16", "Tiny", 8192)
    assert refused.message == "the prompt is at least 40000 tokens, but Tiny reads at most 8192 tokens"
    assert refused.hint.startswith("shorten the input to about 4096 tokens")


def test_a_huge_attached_file_is_read_only_as_far_as_it_is_attached(tmp_path):
    from qwenlocal.session import MAX_ATTACH, attach

    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.write("é".encode() * (3 * MAX_ATTACH))  # 2 bytes a character: cut inside one at the limit
        f.truncate(4 << 30)
    tracemalloc.start()
    try:
        text, _, notes = attach(f"read @{big}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB to attach 200,000 characters"
    assert notes[0] == f"{big} is long: only its first {MAX_ATTACH:,} characters are attached"
    assert text.count("é") == MAX_ATTACH
