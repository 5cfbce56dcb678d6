"""The image rows of the benchmark: image-to-first-token against llama.cpp's `llama-mtmd-cli`, and
a follow-up question about the image against a text-only follow-up of the same length.

Both sides load Qwen3.5-0.8B's shapes (the text model of `python -m bench`, with the vision
tokens in its vocabulary) and a projector with the real 0.8B projector's tensor shapes (random
F16 weights: speed does not depend on the values), the same image, the same token budget
(`--image-max-tokens`), the same threads. `llama-mtmd-cli` runs in its chat mode, started afresh
for each sample (its second image message in one process reads a freed batch and aborts:
`mtmd_batch_get_output_embd`, "invalid chunk type"): loaded, then `/image F` (it decodes the file
then) and the question; its time is from sending the question to its first output on stdout (the
end of evaluating the message).
Ours is from the image's bytes in hand to the first generated token (the first answer event:
not the reading progress, which comes first): it decodes, preprocesses, encodes and evaluates
them all inside that time. The engine's own `ttft_s` for the same answer (from the start of the
prompt, after the image is decoded and cut into patches) is kept beside it in results.json.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import numpy as np

from qwenlocal import images
from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.events import Done, Notice, PromptProgress, Stats
from qwenlocal.testing import ggufs, projectors

from . import llama_bench, loadavg

HEADING = "Images: time to first token"
QUESTION = "Describe this image in one sentence."


def log(text: str) -> None:
    llama_bench._log(text)


def files(threads: int) -> tuple[Path, Path, Path]:
    """The text model (with vision tokens), the shape-faithful 0.8B projector and a photo-like PNG."""
    folder = llama_bench.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "qwen35-0.8b-vision-shape-q4_k_m.gguf"
    if not model.exists():
        log("writing Qwen3.5-0.8B's shapes with the vision tokens, then quantizing to Q4_K_M")
        f16 = model.with_suffix(".f16.gguf")
        ggufs.write_random(f16, ggufs.QWEN35_0_8B, f16=True)
        part = model.with_suffix(".part")
        ggufs.quantize(f16, part, "Q4_K_M", threads=threads)
        f16.unlink()
        part.rename(model)
    mmproj = folder / "qwen35-0.8b-mmproj-shape-f16.gguf"
    if not mmproj.exists():
        log("writing a projector with Qwen3.5-0.8B's vision tower shapes (F16)")
        part = mmproj.with_suffix(".part")
        projectors.write_projector(part, projectors.QWEN35_0_8B_VISION, f16=True)
        part.rename(mmproj)
    photo = folder / "photo-1024x768.png"
    if not photo.exists():
        from PIL import Image

        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:768, 0:1024]
        pixels = np.stack([x / 4, y / 3, (x + y) / 7], -1) + rng.normal(0, 12, (768, 1024, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photo)
    return model, mmproj, photo


class MtmdCli:
    """llama-mtmd-cli in its chat mode, loaded, asked one question about an image."""

    def __init__(self, binary: Path, model: Path, mmproj: Path, threads: int, tokens: int) -> None:
        self.proc = subprocess.Popen(
            [str(binary), "-m", str(model), "--mmproj", str(mmproj), "-t", str(threads), "-c", "4096",
             "-n", "1", "--temp", "0", "--image-max-tokens", str(tokens), "--jinja",
             *llama_bench.same_buffers("llama-mtmd-cli")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.buffer, self.arrived = b"", 0.0
        self._until(b"\n> ", 600)

    def _until(self, marker: bytes, timeout: float) -> float:
        """Read stdout until `marker` (consumed with what came before it); returns when the first
        byte after the call's start arrived (what was already read counts as arrived then)."""
        start = time.perf_counter()
        first = self.arrived if self.buffer else None
        fd = self.proc.stdout.fileno()
        while marker not in self.buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, timeout - (time.perf_counter() - start)))
            data = os.read(fd, 65536) if ready else b""
            if not data:
                raise RuntimeError(f"llama-mtmd-cli stopped before {marker!r}: {self.buffer[-500:]!r}")
            self.arrived = time.perf_counter()
            first = first or self.arrived
            self.buffer += data
        self.buffer = self.buffer.split(marker, 1)[1]
        return first

    def _send(self, line: str) -> float:
        sent = time.perf_counter()
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return sent

    def image_ttft(self, photo: Path) -> float:
        self._send(f"/image {photo}")
        self._until(b"loaded\n", 60)
        self._until(b"\n> ", 60)
        assert not self.buffer.strip(), self.buffer
        sent = self._send(QUESTION)
        self._until(QUESTION.encode() + b"\n", 60)  # its console echoes what it reads
        first = self._until(b"\n> ", 600)  # its next output: the end of evaluating the message
        return first - sent

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def our_ttft(engine: LlamaEngine, data: bytes) -> tuple[float, Stats]:
    """Seconds from the image's bytes to the first generated token, and the engine's stats."""
    engine.cache.reset()
    engine.vision.forget()  # the image is new to it: decoded, preprocessed and encoded again
    options = GenerateOptions(_sampling(), max_tokens=1, ignore_eos=True, seed=1)
    started = time.perf_counter()
    image = images.load(data, "photo.png")
    messages = [{"role": "user", "content": images.with_images(QUESTION, [image])}]
    first = None
    for event in engine.stream(messages, options, checkpoint=False):
        if first is None and not isinstance(event, PromptProgress | Notice):  # an answer's first token
            first = time.perf_counter() - started
        if isinstance(event, Done):
            return first, event.stats
    raise RuntimeError("the stream ended without Done")


def _sampling():
    from qwenlocal.models.catalog import load as catalog

    return catalog().models["qwen3.5-0.8b"].sampling(False)


def follow_ups(engine: LlamaEngine, data: bytes) -> tuple[float, float]:
    """Time to first token of a follow-up question after a turn with the image and after the same
    turn without it (both reusing the state of the first turn)."""
    options = GenerateOptions(_sampling(), max_tokens=16, ignore_eos=True, seed=1)
    image = images.load(data, "photo.png")
    out = []
    for content in (images.with_images(QUESTION, [image]), QUESTION):
        engine.cache.reset()
        first = list(engine.stream([{"role": "user", "content": content}], options))[-1]
        history = [{"role": "user", "content": content}, {"role": "assistant", "content": first.answer}]
        follow = {"role": "user", "content": "And what colour is in its top left corner?"}
        done = list(engine.stream([*history, follow], options))[-1]
        out.append(done.stats.ttft_s)
    return out[0], out[1]


def measure(args) -> dict:
    """Interleaved rounds: llama-mtmd-cli's sample, then ours; the follow-ups after."""
    threads = args.threads
    model, mmproj, photo = files(threads)
    binary = llama_bench.build(target="llama-mtmd-cli")
    data = photo.read_bytes()
    tokens = args.image_tokens
    ref, ours, engine_ttft, with_image, text_only = [], [], [], [], []
    options = LoadOptions(n_ctx=4096, n_threads=threads, image_tokens=tokens)
    with LlamaEngine(model, options, mmproj) as engine:
        with loadavg.watch() as seen:
            for rnd in range(args.image_reps):
                cli = MtmdCli(binary, model, mmproj, threads, tokens)
                try:
                    ref.append(cli.image_ttft(photo))
                finally:
                    cli.close()
                seconds, stats = our_ttft(engine, data)
                ours.append(seconds)
                engine_ttft.append(stats.ttft_s)
                log(f"image {rnd + 1}/{args.image_reps}: {ours[-1]:.2f}s (ttft_s {stats.ttft_s:.2f}s) vs "
                    f"llama-mtmd-cli {ref[-1]:.2f}s")  # fmt: skip
        with loadavg.watch() as later:
            for _ in range(args.image_reps):
                a, b = follow_ups(engine, data)
                with_image.append(a)
                text_only.append(b)
        n_image = engine.vision.chunk(images.load(data, "photo.png")).n_tokens
    return {"tokens": tokens, "image_tokens": n_image, "threads": threads, "ours": ours, "ref": ref,
            "ours_engine_ttft": engine_ttft, "follow_image": with_image, "follow_text": text_only,
            "load": seen.mean, "follow_load": later.mean, "loads": seen.samples + later.samples}  # fmt: skip


def section(row: dict, command: str, targets: dict) -> list[str]:
    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    speed = min(row["ref"]) / min(row["ours"])  # time ratio: above 1 means faster than llama.cpp's
    follow = min(row["follow_image"]) / min(row["follow_text"])
    return [
        f"{HEADING} (`{command}`, run alone; Qwen3.5-0.8B's shapes with a projector of the real 0.8B",
        f"projector's tensor shapes, random F16 weights; one 1024x768 PNG at a budget of {row['tokens']}",
        f"image tokens ({row['image_tokens']} used), {row['threads']} threads; best of {len(row['ours'])} "
        "interleaved samples each):",
        "",
        f"| measure | qwenlocal | llama-mtmd-cli | speed vs llama-mtmd-cli | {loadavg.HEADER} |",
        "|---|---|---|---|---|",
        f"| image to first token | {min(row['ours']):.2f}s | {min(row['ref']):.2f}s | "
        f"{speed:.3f}x {ok(speed >= targets['image'])} | {loadavg.cell(row.get('load'))} |",
        "",
        f"| measure | after a turn with the image | after the same turn without it | ratio | {loadavg.HEADER} |",
        "|---|---|---|---|---|",
        f"| follow-up question, time to first token | {min(row['follow_image']):.3f}s | "
        f"{min(row['follow_text']):.3f}s | {follow:.2f} {ok(follow <= targets['follow_up'])} | "
        f"{loadavg.cell(row.get('follow_load'))} |",
        "",
        f"Targets: image to first token at >= {targets['image']}x llama-mtmd-cli's speed; a follow-up "
        f"about the image within {targets['follow_up']}x a text-only follow-up's time to first token.",
        "",
    ]


def kept(report: str) -> list[str] | None:
    """The image section of an earlier report (a full run keeps it: it measures these rows only
    with `--only image`)."""
    old = report.splitlines()
    if not any(line.startswith(HEADING) for line in old):
        return None
    start = next(i for i, line in enumerate(old) if line.startswith(HEADING))
    end = start + next(i for i, line in enumerate(old[start:]) if line.startswith("Targets: image"))
    return old[start : end + 1] + [""]


def splice(report: str, lines: list[str]) -> str:
    """`report` with its image section replaced by `lines`, or them appended before the chart."""
    old = report.splitlines()
    if any(line.startswith(HEADING) for line in old):
        start = next(i for i, line in enumerate(old) if line.startswith(HEADING))
        end = start + next(i for i, line in enumerate(old[start:]) if line.startswith("Targets: image"))
        return "\n".join(old[:start] + lines[:-1] + old[end + 1 :]) + "\n"
    chart = next((i for i, line in enumerate(old) if line.startswith("![")), len(old))
    return "\n".join(old[:chart] + lines + old[chart:]) + "\n"
