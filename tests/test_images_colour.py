"""A model whose answer follows the image: the colour of what it shows, through the real libmtmd.

The projector (`projectors.write_colour_projector`, the real `qwen3vl_merger` type) turns each
image token into how far its pixels lean to red or to blue; the scripted model
(`ggufs.write_scripted(..., by_colour=...)`) reads that through its full-attention layer at the
question. So "what colour?" about a red square answers RED, about a blue one BLUE, and without an
image, or about a green one (neither), NONE: the answer is computed from the pixels, by the real
encoder and the real text model, not looked up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qwenlocal import images
from qwenlocal.engine import GenerateOptions, LlamaEngine, LoadOptions
from qwenlocal.engine.vision import Projector
from qwenlocal.events import Done
from qwenlocal.models.catalog import Sampling
from qwenlocal.testing import ggufs, projectors
from qwenlocal.testing.cli import run as run_in_process

from .conftest import qwenlocal

GREEDY = Sampling(0.0, 1.0, 1, 0.0, 0.0, 1.0)
RED, BLUE, NONE = "It is red.", "It is blue.", "I cannot tell."
RED_RGB, BLUE_RGB = (220, 20, 20), (20, 20, 220)


@pytest.fixture(scope="session")
def colour_projector(models_dir) -> Path:
    return projectors.write_colour_projector(models_dir / "mmproj-colour.gguf")


@pytest.fixture(scope="session")
def colour_model(models_dir) -> Path:
    """Answers NONE, or RED after a mostly red image, BLUE after a mostly blue one."""
    return ggufs.write_scripted(
        models_dir / "colour.gguf", {"\n\n": NONE}, by_colour={"\n\n": {"red": RED, "blue": BLUE}}
    )


def _columns(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """A 128x128 PNG of vertical bands, 32 px (one image token) wide, left to right."""
    from PIL import Image

    image = Image.new("RGB", (128, 128))
    for i, colour in enumerate(colours):
        image.paste(colour, (32 * i, 0, 32 * (i + 1), 128))
    image.save(path, format="PNG")
    return path


@pytest.fixture(scope="session")
def colours(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("colours")
    return {
        # a square of the colour on white: 4 of the 16 tokens are coloured
        "red": projectors.write_png(folder / "red.png", 128, 128, RED_RGB),
        "blue": projectors.write_png(folder / "blue.png", 128, 128, BLUE_RGB),
        "green": projectors.write_png(folder / "green.png", 128, 128, (20, 200, 20)),
        "navy.jpg": _jpeg(folder / "navy.jpg", (10, 20, 90)),
        "mostly red": _columns(folder / "mostly-red.png", [RED_RGB, RED_RGB, RED_RGB, BLUE_RGB]),
        "mostly blue": _columns(folder / "mostly-blue.png", [BLUE_RGB, RED_RGB, BLUE_RGB, BLUE_RGB]),
        "half and half": _columns(folder / "half.png", [RED_RGB, BLUE_RGB, RED_RGB, BLUE_RGB]),
    }


def _jpeg(path: Path, colour) -> Path:
    from PIL import Image

    Image.new("RGB", (96, 64), colour).save(path, format="JPEG")
    return path


def ask(engine, content, history=()) -> Done:
    options = GenerateOptions(GREEDY, max_tokens=12)
    messages = [*history, {"role": "user", "content": content}]
    return [e for e in engine.stream(messages, options) if isinstance(e, Done)][0]


@pytest.fixture
def encodes(monkeypatch) -> list[int]:
    """The image chunks libmtmd encodes (and decodes into the context), by token count."""
    seen: list[int] = []
    evaluate = Projector.evaluate

    def counting(self, model, chunk):
        seen.append(chunk.n_tokens)
        return evaluate(self, model, chunk)

    monkeypatch.setattr(Projector, "evaluate", counting)
    return seen


def test_the_projector_writes_each_token_s_colour(colour_model, colour_projector, colours):
    """libmtmd's own encoder output for a red and a blue square on white: +-22.35 along `hue`
    and 22.35 along `colourful` in the 4 tokens the square covers, 0 in the 12 white ones, 1.0
    along `seen` in all, nothing anywhere else (the arithmetic of `colour_tensors`' docstring)."""
    directions = ggufs.image_directions(256)
    with LlamaEngine(colour_model, LoadOptions(2048, 2, image_tokens=64), colour_projector) as engine:
        projector = engine.vision
        out = {}
        for name in ("red", "blue"):
            chunk = projector.chunk(images.read(colours[name]))
            assert projector.mtmd.mtmd_encode_chunk(projector.ctx, chunk.chunk) == 0
            embd = projector.mtmd.mtmd_get_output_embd(projector.ctx)
            out[name] = np.ctypeslib.as_array(embd, shape=(chunk.n_tokens, 256)).copy()
    square = np.zeros((4, 4), bool)
    square[1:3, 1:3] = True  # pixels 32-96 of 128: the middle 2x2 of the 4x4 tokens
    for name, sign in (("red", 1), ("blue", -1)):
        embd = out[name]
        hue = embd[:, directions["hue"]].reshape(4, 4)
        colourful = embd[:, directions["colourful"]].reshape(4, 4)
        np.testing.assert_allclose(hue[square], sign * 22.35, atol=0.05)
        np.testing.assert_allclose(colourful[square], 22.35, atol=0.05)
        assert np.abs(hue[~square]).max() < 1e-3 and np.abs(colourful[~square]).max() < 1e-3
        np.testing.assert_allclose(embd[:, directions["seen"]], 1.0, atol=1e-6)
        assert np.abs(np.delete(embd, list(directions.values()), axis=1)).max() == 0


def test_the_answer_follows_the_colour_of_the_image(colour_model, colour_projector, colours):
    """Red and blue squares, a dark blue JPEG: their colour. A green square
    (as red as it is blue) and no image: NONE. Bands of both colours: the colour of most of the
    coloured tokens (3 of 4), and NONE for an even split."""
    expected = {
        "red": RED,
        "blue": BLUE,
        "navy.jpg": BLUE,
        "green": NONE,
        "mostly red": RED,
        "mostly blue": BLUE,
        "half and half": NONE,
    }
    with LlamaEngine(colour_model, LoadOptions(2048, 2, image_tokens=64), colour_projector) as engine:
        answers = {
            name: ask(engine, images.with_images("What colour is it?", [images.read(colours[name])])).answer
            for name in expected
        }
        no_image = ask(engine, "What colour is it?")
    assert answers == expected
    assert no_image.answer == NONE and no_image.stats.image_tokens == 0


def test_a_follow_up_answers_from_the_image_without_encoding_it_again(
    colour_model, colour_projector, colours, encodes
):
    """The second question of a chat about a blue image answers BLUE from the context's state:
    libmtmd encodes the image once, and the follow-up evaluates only its own text. It reads the
    image, not the answer before it: after a red image whose answer was (made to read) BLUE, it
    says RED."""
    blue = images.with_images("What colour is it?", [images.read(colours["blue"])])
    with LlamaEngine(colour_model, LoadOptions(2048, 2, image_tokens=64), colour_projector) as engine:
        first = ask(engine, blue)
        history = [{"role": "user", "content": blue}, {"role": "assistant", "content": first.answer}]
        follow = ask(engine, "Are you sure?", history)
        assert (first.answer, follow.answer) == (BLUE, BLUE)
        assert encodes == [16]  # once, for the first question
        # reused: the state after the first question (image included); evaluated: the text after
        # it (the answer, as the template renders it in history, and the new question)
        after = engine.render([*history, {"role": "user", "content": "Are you sure?"}], False)
        after = after.split("<|im_end|>\n", 1)[1]
        assert follow.stats.prompt_tokens - follow.stats.reused_tokens == len(engine.tokenize(after, True))
        assert follow.stats.image_tokens == 16 and follow.stats.reused_tokens > 16

        red = images.with_images("What colour is it?", [images.read(colours["red"])])
        misled = [{"role": "user", "content": red}, {"role": "assistant", "content": BLUE}]
        assert ask(engine, "Are you sure?", misled).answer == RED


def test_chat_answers_a_follow_up_from_the_image(colour_model, colour_projector, colours, encodes):
    """`chat` (piped, in-process): `@blue.png` in the first message, a follow-up without it;
    both answers BLUE, the image encoded once, the second turn reusing the first's state."""
    done = run_in_process(
        "chat", "-m", str(colour_model), "--mmproj", str(colour_projector), "--no-think", "--verbose",
        input=f"what colour is @{colours['blue']}?\nare you sure?\n".encode(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == [*BLUE.split(), *BLUE.split()]
    assert encodes == [16]
    stats = [line for line in done.stderr.decode().splitlines() if "tok/s" in line]
    assert len(stats) == 2 and "reused" in stats[1]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_run_answers_the_colour_of_the_image_end_to_end(colour_model, colour_projector, colours):
    """`qwenlocal run --image red.png "what colour?"` in a real process answers red, and with
    blue.png blue (the CLI's own defaults: sampling, image budget)."""
    for name, expected in (("red", RED), ("blue", BLUE)):
        done = qwenlocal(
            "run", "-m", str(colour_model), "--mmproj", str(colour_projector),
            "--image", str(colours[name]), "what colour?",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().strip() == expected
    without = run_in_process("run", "-m", str(colour_model), "what colour?")
    assert without.returncode == 0, without.stderr
    assert without.stdout.decode().strip() == NONE


@pytest.mark.parametrize(
    "by_colour",
    [{"\n": {"red": RED}}, {"\n\n": {"green": "It is green."}}],
    ids=["a trigger without a plain reply", "a colour it cannot see"],
)
def test_colour_replies_need_a_plain_reply_and_red_or_blue(tmp_path, by_colour):
    with pytest.raises(ValueError, match="red and blue replies"):
        ggufs.write_scripted(tmp_path / "bad.gguf", {"\n\n": NONE}, by_colour=by_colour)
