"""Images through the real libmtmd, on generated `qwen3vl_merger` projectors and real PNG/JPEG files.

In-process: the image checks, the engine (the image changes the answer, M-RoPE positions hold
across reused state, a follow-up evaluates only its new text), `run --image` and its errors.
End to end in a subprocess: an image piped on stdin. In a pty: `@photo.png` in chat.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from qwenlocal import images
from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.errors import ExitCode, QwenlocalError
from qwenlocal.events import Done
from qwenlocal.models.catalog import Sampling
from qwenlocal.testing import ggufs, projectors
from qwenlocal.testing.cli import run as run_in_process

from .conftest import qwenlocal

GREEDY = Sampling(0.0, 1.0, 1, 0.0, 0.0, 1.0)
SQUARE = "The square is red."


@pytest.fixture(scope="session")
def projector(models_dir) -> Path:
    return projectors.write_projector(models_dir / "mmproj-tiny.gguf")


@pytest.fixture(scope="session")
def vision_model(models_dir) -> Path:
    """A scripted model whose reply to a question (after the template's "\\n\\n") is SQUARE."""
    return ggufs.write_scripted(models_dir / "vision.gguf", {"\n\n": SQUARE})


@pytest.fixture(scope="session")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    out = {
        "red": projectors.write_png(folder / "red.png", 128, 128, (220, 20, 20)),
        "blue": projectors.write_png(folder / "blue.png", 128, 128, (20, 20, 220)),
    }
    for fmt in ("JPEG", "GIF", "BMP", "WEBP"):
        out[fmt] = projectors.write_image(folder / f"photo.{fmt.lower()}", fmt, 96, 80)
    data = out["red"].read_bytes()
    out["truncated"] = folder / "truncated.png"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["heic"] = folder / "photo.heic"
    out["heic"].write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    out["svg"] = folder / "drawing.svg"
    out["svg"].write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n')
    out["text"] = folder / "notes.png"
    out["text"].write_text("not an image at all\n")
    return out


def ask(engine, content, options=None, history=()) -> Done:
    options = options or GenerateOptions(GREEDY, max_tokens=8, ignore_eos=True)
    messages = [*history, {"role": "user", "content": content}]
    return [e for e in engine.stream(messages, options) if isinstance(e, Done)][0]


# -- images.py: what is an image, decided by libmtmd's own decoder ------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP"])
def test_formats_the_decoder_reads_are_accepted_with_their_size(pictures, fmt):
    image = images.read(pictures[fmt])
    assert (image.format, image.width, image.height) == (fmt, 96, 80)
    png = images.read(pictures["red"])
    assert (png.format, png.width, png.height) == ("PNG", 128, 128)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "is a corrupt or truncated PNG file"),
        ("heic", "is HEIC, which the image decoder cannot read"),
        ("svg", "is SVG, which the image decoder cannot read"),
        ("text", "is not an image qwenlocal can read"),
    ],
)
def test_bad_images_are_refused_with_the_reason(pictures, name, reason):
    with pytest.raises(QwenlocalError) as error:
        images.read(pictures[name])
    assert error.value.code == ExitCode.BAD_INPUT
    assert reason in error.value.message and error.value.hint


def test_webp_needs_ffmpeg(pictures, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(QwenlocalError, match="WebP.*ffmpeg") as error:
        images.read(pictures["WEBP"])
    assert error.value.code == ExitCode.BAD_INPUT


# -- the engine -----------------------------------------------------------------------------------


def test_the_image_reaches_the_model(random_model, projector, pictures):
    """Greedy answers of a random model differ between two images and repeat for the same one."""
    red, blue = images.read(pictures["red"]), images.read(pictures["blue"])
    with LlamaEngine(random_model, LoadOptions(2048, 2, image_tokens=64), projector) as engine:
        first = ask(engine, images.with_images("What is this?", [red]))
        other = ask(engine, images.with_images("What is this?", [blue]))
        again = ask(engine, images.with_images("What is this?", [red]))
    assert first.tokens != other.tokens
    assert first.tokens == again.tokens
    assert first.stats.image_tokens == 16  # 128x128 px: 4x4 tokens of 32x32 px
    assert first.stats.prompt_tokens > first.stats.image_tokens


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_follow_up_reuses_the_image_and_answers_as_a_fresh_engine(random_model, projector, pictures):
    """The next turn restores the state after the image, and its answer is the same as a fresh
    engine's on the whole conversation (M-RoPE positions line up after reused state)."""
    big = images.read(pictures["red"])
    options = GenerateOptions(GREEDY, max_tokens=6, ignore_eos=True)
    load = LoadOptions(2048, 2, image_tokens=64)
    with LlamaEngine(random_model, load, projector) as engine:
        first = ask(engine, images.with_images("Describe it.", [big]), options)
        history = [
            {"role": "user", "content": images.with_images("Describe it.", [big])},
            {"role": "assistant", "content": first.answer},
        ]
        follow = ask(engine, "And the colour?", options, history)
    with LlamaEngine(random_model, load, projector) as fresh:
        whole = ask(fresh, "And the colour?", options, history)
    assert follow.stats.reused_tokens > first.stats.image_tokens
    assert whole.stats.reused_tokens == 0
    assert follow.tokens == whole.tokens


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_follow_up_evaluates_only_its_new_text(vision_model, projector, pictures):
    """A follow-up about an image evaluates exactly as many tokens as the same follow-up after a
    text-only first turn: the image (and the first turn) are never evaluated again."""
    options = GenerateOptions(GREEDY, max_tokens=8)
    red = images.read(pictures["red"])
    evaluated = {}
    for kind, content in (("image", images.with_images("Describe it.", [red])), ("text", "Describe it.")):
        with LlamaEngine(vision_model, LoadOptions(2048, 2, image_tokens=64), projector) as engine:
            first = ask(engine, content, options)
            history = [{"role": "user", "content": content}, {"role": "assistant", "content": first.answer}]
            follow = ask(engine, "And the colour?", options, history)
        assert first.answer == follow.answer == SQUARE
        evaluated[kind] = follow.stats.prompt_tokens - follow.stats.reused_tokens
        if kind == "image":
            assert follow.stats.image_tokens == 16 and follow.stats.reused_tokens > 16
    assert evaluated["image"] == evaluated["text"]


def test_a_model_without_a_projector_says_how_to_get_one(random_model, pictures):
    with LlamaEngine(random_model, LoadOptions(1024, 2)) as engine:
        with pytest.raises(QwenlocalError, match="cannot see images") as error:
            ask(engine, images.with_images("What is this?", [images.read(pictures["red"])]))
    assert "--mmproj PATH" in error.value.hint and "pull SIZE --vision" in error.value.hint


def test_a_projector_of_another_width_is_refused(random_model, models_dir):
    wrong = projectors.write_projector(models_dir / "mmproj-wide.gguf", projectors.VisionShape(out_embd=512))
    with pytest.raises(QwenlocalError) as error:
        LlamaEngine(random_model, LoadOptions(1024, 2), wrong)
    assert error.value.code == ExitCode.MODEL_FILE
    assert "cannot load the projector" in error.value.message


# -- run ------------------------------------------------------------------------------------------


def test_run_with_an_image_answers_and_reports_image_tokens(vision_model, projector, pictures):
    done = run_in_process(
        "run", "-m", str(vision_model), "--mmproj", str(projector), "--image", str(pictures["red"]),
        "--image-tokens", "64", "--json", "what colour is the square?",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] == SQUARE
    assert out["stats"]["image_tokens"] == 16


def test_two_images_and_the_token_budget(vision_model, projector, pictures):
    done = run_in_process(
        "run", "-m", str(vision_model), "--mmproj", str(projector), "--image", str(pictures["red"]),
        "--image", str(pictures["JPEG"]), "--image-tokens", "16", "--json", "compare them",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stats"]["image_tokens"] <= 32


@pytest.mark.parametrize(
    ("picture", "reason"),
    [("truncated", "corrupt or truncated PNG"), ("heic", "is HEIC"), ("svg", "is SVG")],
)
def test_run_refuses_a_bad_image_before_loading(vision_model, projector, pictures, picture, reason):
    done = run_in_process(
        "run", "-m", str(vision_model), "--mmproj", str(projector), "--image", str(pictures[picture]), "hi"
    )
    assert done.returncode == ExitCode.BAD_INPUT
    err = done.stderr.decode()
    assert reason in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_image_without_a_projector(vision_model, pictures):
    done = run_in_process("run", "-m", str(vision_model), "--image", str(pictures["red"]), "hi")
    assert done.returncode == ExitCode.USAGE
    assert "--mmproj PATH" in done.stderr.decode()


def test_a_catalog_model_without_its_projector_names_the_command(pictures):
    done = run_in_process("run", "-m", "0.8b", "--image", str(pictures["red"]), "hi")
    assert done.returncode == ExitCode.NOT_DOWNLOADED
    assert "qwenlocal pull 0.8b --vision" in done.stderr.decode()


def test_an_image_piped_on_stdin_is_the_material(vision_model, projector, pictures):
    """End to end: `cat photo.jpg | qwenlocal run "describe"` in a real process."""
    done = qwenlocal(
        "run", "-m", str(vision_model), "--mmproj", str(projector), "--image-tokens", "64", "--verbose",
        "describe", input=pictures["JPEG"].read_bytes(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == SQUARE


def test_a_corrupt_image_on_stdin(vision_model, projector, pictures):
    done = run_in_process(
        "run", "-m", str(vision_model), "--mmproj", str(projector), "describe",
        input=pictures["truncated"].read_bytes(),
    )  # fmt: skip
    assert done.returncode == ExitCode.BAD_INPUT
    assert "stdin is a corrupt or truncated PNG file" in done.stderr.decode()


# -- chat -----------------------------------------------------------------------------------------


def test_chat_at_photo_shows_the_image_to_the_model(vision_model, projector, pictures, isolated_home):
    """In a pty: `@photo.png` attaches the image (not as text), the answer comes, and a follow-up
    about it reuses the encoded image; a bad image is refused and nothing is sent."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "chat", "-m", str(vision_model), "--mmproj", str(projector), "--no-think"],
        env={**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
        dimensions=(50, 120),
        timeout=60,
        encoding="utf-8",
    )
    child.expect("/help for commands")
    child.expect("›")
    child.sendline(f"what colour is the square in @{pictures['red']}?")
    child.expect(r"context [\d,]+/[\d,]+")
    shown = child.before
    assert "attached " + str(pictures["red"]) + " (128x128 PNG)" in shown
    assert SQUARE in shown
    child.expect("›")
    child.sendline(f"and @{pictures['truncated']}?")
    child.expect("corrupt or truncated PNG")
    child.expect("›")
    child.sendline(f"/image {pictures['blue']} and this one?")
    child.expect(r"context [\d,]+/[\d,]+")
    assert SQUARE in child.before
    child.expect("›")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    folder = isolated_home / ".local/share/qwenlocal/conversations"
    saved = json.loads(next(folder.glob("*.json")).read_text())
    users = [m for m in saved["messages"] if m["role"] == "user"]
    assert [len(m.get("images", [])) for m in users] == [1, 1]  # the bad one was never sent
    assert users[0]["images"][0]["path"] == str(pictures["red"])


# -- the agent --------------------------------------------------------------------------------------


def test_agent_read_file_shows_an_image_when_a_projector_is_loaded(
    vision_model, projector, pictures, tmp_path
):
    """read_file of an image is the image itself in the tool result (the chat template renders it
    inside <tool_response>, the real engine evaluates it); without a projector it stays refused as
    a binary file; a corrupt image is the tool's error."""
    from qwenlocal.agent.approval import YES, Approver
    from qwenlocal.agent.loop import Agent, Limits
    from qwenlocal.agent.sandbox import Shell
    from qwenlocal.agent.tools import Workspace
    from qwenlocal.agent.undo import Run
    from qwenlocal.testing.engine import FakeEngine

    root = tmp_path / "project"
    root.mkdir()
    (root / "photo.png").write_bytes(pictures["red"].read_bytes())
    (root / "broken.png").write_bytes(pictures["truncated"].read_bytes())
    call = "<tool_call>\n<function=read_file>\n<parameter=path>\n{}\n</parameter>\n</function>\n</tool_call>"
    seen = {}
    for sees in (True, False):
        engine = FakeEngine([call.format("photo.png"), call.format("broken.png"), "It is red."])
        workspace = Workspace(root, Shell(sandbox=False))
        workspace.images = sees
        options = GenerateOptions(GREEDY)
        Agent(engine, options, workspace, Approver(mode=YES), Run(root), lambda e: None, Limits()).solve(
            "look"
        )
        seen[sees] = engine.seen[-1]
    shown, broken = [m for m in seen[True] if m["role"] == "tool"]
    assert isinstance(shown["content"], list)
    assert images.images_of([shown])[0].sha256 == images.read(pictures["red"]).sha256
    assert "photo.png: a PNG image, 128x128 pixels" in images.text_of(shown["content"])
    assert "corrupt or truncated PNG" in broken["content"]
    assert "binary file" in [m for m in seen[False] if m["role"] == "tool"][0]["content"]

    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    with LlamaEngine(vision_model, LoadOptions(2048, 2, image_tokens=64), projector) as engine:
        rendered = engine.render(seen[True], False, tools)
        assert "<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>photo.png" in rendered
        done = [e for e in engine.stream(seen[True], GenerateOptions(GREEDY), tools) if isinstance(e, Done)][
            0
        ]
    assert done.stats.image_tokens == 16
