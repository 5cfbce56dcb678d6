"""A catalog model's vision projector from a fake hub: the consent rules of models (exit 5 with
the command, --pull, `pull --vision`), verified, then listed, shown and removed."""

from __future__ import annotations

import hashlib
import json

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing import ggufs, projectors
from qwenlocal.testing.cli import run
from qwenlocal.testing.fakehub import FakeHub

REPO, MODEL, MMPROJ = "unsloth/Qwen3.5-0.8B-GGUF", "Qwen3.5-0.8B-Q4_K_M.gguf", "mmproj-F16.gguf"
ANSWER = "A red square."


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("vision-hub")
    model = ggufs.write_scripted(folder / "m.gguf", {"\n\n": ANSWER})
    projector = projectors.write_projector(folder / "p.gguf")
    return {MODEL: model.read_bytes(), MMPROJ: projector.read_bytes()}


@pytest.fixture
def hub(monkeypatch, served):
    fake = FakeHub()
    for name, data in served.items():
        fake.add(REPO, name, data)
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.delenv("HF_HUB_OFFLINE")
    yield fake
    fake.stop()


@pytest.fixture
def photo(tmp_path):
    return projectors.write_png(tmp_path / "photo.png", 64, 64)


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_missing_projector_names_the_command_then_pull_vision_gets_it(hub, photo, served):
    asked = run("run", "-m", "0.8b:q4_k_m", "--image", str(photo), "what colour is the square?")
    assert asked.returncode == ExitCode.NOT_DOWNLOADED
    assert "qwenlocal pull 0.8b --vision" in asked.stderr.decode()
    assert not hub.requests  # nothing was downloaded without consent

    pulled = run("pull", "0.8b:q4_k_m", "--vision", "--json")
    assert pulled.returncode == 0, pulled.stderr
    files = [json.loads(line) for line in pulled.stdout.decode().splitlines()]
    assert [f["quant"] for f in files] == ["Q4_K_M", "MMPROJ"]
    path = files[1]["path"]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == hashlib.sha256(served[MMPROJ]).hexdigest()

    done = run("run", "-m", "0.8b:q4_k_m", "--image", str(photo), "what colour is the square?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == ANSWER

    rows = {r["name"]: r for r in json.loads(run("list", "--json").stdout)}
    assert rows["0.8b:mmproj"]["status"] == "downloaded"
    assert rows["0.8b:mmproj"]["bytes"] == len(served[MMPROJ])
    shown = json.loads(run("show", "0.8b:mmproj", "--json").stdout)
    assert shown["architecture"] == "clip" and shown["bytes"] == len(served[MMPROJ])

    removed = run("rm", "0.8b:mmproj", "--yes", "--json")
    assert json.loads(removed.stdout)["removed"] == ["0.8b:mmproj"]
    again = run("run", "-m", "0.8b:q4_k_m", "--image", str(photo), "hi")
    assert again.returncode == ExitCode.NOT_DOWNLOADED


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_pull_flag_fetches_model_and_projector_on_first_use(hub, photo):
    done = run("run", "-m", "0.8b:q4_k_m", "--pull", "--image", str(photo), "what colour is the square?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == ANSWER
    assert any(MMPROJ in r for r in hub.requests)


def test_the_pick_counts_the_projector_and_its_compute_buffer():
    """With images, the same model needs its projector's bytes and the encoder's buffer for the
    budget more; where that no longer fits, a smaller context (or model) is chosen."""
    from qwenlocal.models.catalog import load
    from qwenlocal.models.hardware import GiB, Hardware, Want, pick

    hw = Hardware(8 * GiB, 6 * GiB, 4, 8, system="test")
    spec = load().models["qwen3.5-4b"]
    text = pick(hw, load(), Want(model=spec, quant="Q4_K_M", n_ctx=8192))
    seeing = pick(hw, load(), Want(model=spec, quant="Q4_K_M", n_ctx=8192, image_tokens=1024))
    assert (
        seeing.memory_bytes - text.memory_bytes == spec.projector.bytes + 1024 * spec.vision_bytes_per_token
    )
    tight = Hardware(6 * GiB, int(4.2 * GiB), 4, 8, system="test")
    assert pick(tight, load(), Want(model=spec, quant="Q4_K_M", n_ctx=4096)).fits
    assert not pick(tight, load(), Want(model=spec, quant="Q4_K_M", n_ctx=4096, image_tokens=4096)).fits
