"""The one private huggingface_hub API qwenlocal uses, `file_download.http_get`, behind one seam
(`download.hub_http_get`): these tests fail if its shape or its resume behaviour changes."""

from __future__ import annotations

import inspect

import pytest

from qwenlocal.models import download
from qwenlocal.testing.fakehub import FakeHub

REPO, FILE = "org/repo-GGUF", "model.gguf"
DATA = bytes(range(256)) * 1024  # 256 KiB: a few of the fake hub's 64 KiB chunks


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, when huggingface_hub loads
    fake = FakeHub()
    fake.add(REPO, FILE, DATA)
    fake.url = f"{fake.start()}/{REPO}/resolve/main/{FILE}"
    yield fake
    fake.stop()


def fetch(hub: FakeHub, tmp_path, have: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """What `pull` does: append to the partial file through the counting wrapper."""
    partial = tmp_path / "blob.incomplete"
    partial.write_bytes(have)
    seen: list[tuple[int, int]] = []
    with partial.open("ab") as f:
        counting = download._Counting(f, len(have), len(DATA), lambda done, total: seen.append((done, total)))
        download.hub_http_get(hub.url, counting, len(have), len(DATA), FILE)
    return partial.read_bytes(), seen


def test_http_get_still_takes_what_the_seam_passes():
    from huggingface_hub.file_download import http_get

    params = inspect.signature(inspect.unwrap(http_get)).parameters
    url, temp_file = list(params.values())[:2]
    assert url.kind is temp_file.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in ("resume_size", "headers", "expected_size", "displayed_filename"):
        assert name in params and params[name].kind is not inspect.Parameter.POSITIONAL_ONLY, name
    required = [p.name for p in list(params.values())[2:] if p.default is inspect.Parameter.empty]
    assert required == [], f"http_get now requires {required}"


def test_the_seam_resumes_with_a_range_request(hub, tmp_path):
    data, seen = fetch(hub, tmp_path, DATA[:100_000])
    assert data == DATA
    assert hub.responses == [[100_000, len(DATA) - 100_000]]  # only the missing bytes were sent
    assert seen[-1] == (len(DATA), len(DATA)) and all(done <= len(DATA) for done, _ in seen)


def test_a_server_that_ignores_the_range_gets_the_whole_file_once(hub, tmp_path):
    hub.faults.ignore_range = True
    data, seen = fetch(hub, tmp_path, b"x" * 100_000)  # even bytes that were wrong are rewritten
    assert data == DATA
    assert hub.responses == [[0, len(DATA)]]
    assert seen[-1] == (len(DATA), len(DATA)) and all(done <= len(DATA) for done, _ in seen)


def test_a_complete_partial_file_asks_for_nothing(hub, tmp_path):
    data, _ = fetch(hub, tmp_path, DATA)
    assert data == DATA and hub.responses == []
