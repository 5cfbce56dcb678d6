"""pull / list / rm / show against a local fake hub (HF_ENDPOINT), through the real CLI: in-process
on a terminal of buffers, and in a subprocess for one end-to-end pull, a killed pull and the
questions on a pty."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwenlocal.errors import ExitCode
from qwenlocal.testing import ggufs
from qwenlocal.testing.cli import run as run_in_process
from qwenlocal.testing.fakehub import COMMIT, FakeHub

from .conftest import ANSWER, qwenlocal


@pytest.fixture
def cli():
    """The CLI in-process (conftest's `cli` runs a subprocess)."""
    return run_in_process


REPO, FILE = "unsloth/Qwen3.5-0.8B-GGUF", "Qwen3.5-0.8B-Q4_K_M.gguf"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    # a scripted model, padded by a large tensor so downloads take a few chunks
    path = tmp_path_factory.mktemp("hub") / "m.gguf"
    shape = ggufs.Shape(n_ff=2048)
    ggufs.write_scripted(path, ggufs.think_reply("hmm", ANSWER), shape=shape)
    return path.read_bytes()


@pytest.fixture
def hub(monkeypatch, model_bytes):
    fake = FakeHub()
    fake.add(REPO, FILE, model_bytes)
    url = fake.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    yield fake
    fake.stop()


def hub_dir(home: Path) -> Path:
    return home / "hf" / "hub" / ("models--" + REPO.replace("/", "--"))


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_pull_downloads_into_the_hf_cache_layout_and_run_uses_it(hub, isolated_home, model_bytes):
    cli = qwenlocal  # end to end, in a subprocess
    result = cli("pull", "0.8b:q4_k_m")
    assert result.returncode == 0, result.stderr
    sha = hashlib.sha256(model_bytes).hexdigest()
    repo = hub_dir(isolated_home)
    blob = repo / "blobs" / sha
    pointer = repo / "snapshots" / COMMIT / FILE
    assert blob.read_bytes() == model_bytes
    assert pointer.is_symlink() and pointer.resolve() == blob
    assert (repo / "refs" / "main").read_text() == COMMIT
    assert result.stdout.decode().strip() == str(pointer)
    assert hub.bytes_served == len(model_bytes)
    assert not list(repo.glob("blobs/*.incomplete"))
    # other tools find it where huggingface_hub looks
    code = f"from huggingface_hub import try_to_load_from_cache as t; print(t({REPO!r}, {FILE!r}))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert found == str(pointer)
    # a second pull serves nothing, and the model runs offline
    assert cli("pull", "0.8b:q4_k_m").returncode == 0 and hub.bytes_served == len(model_bytes)
    answer = cli("run", "-m", "0.8b:q4_k_m", "--no-think", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert answer.returncode == 0 and answer.stdout.decode() == ANSWER + "\n"


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_dropped_connection_resumes_on_the_next_pull(cli, hub, isolated_home, model_bytes):
    half = len(model_bytes) // 2
    hub.faults.drop_after = half
    hub.faults.broken_after_drop = True  # the link stays down: this pull gives up
    first = cli("pull", "0.8b:q4_k_m")
    assert first.returncode == ExitCode.NETWORK, first.stderr
    assert b"resume" in first.stderr and b"Traceback" not in first.stderr
    partial = next(hub_dir(isolated_home).glob("blobs/*.incomplete"))
    have = partial.stat().st_size  # what reached the disk (huggingface_hub writes in 10 MB chunks)
    assert 0 < have <= half
    listed = json.loads(cli("list", "--json").stdout)
    row = next(r for r in listed if r["name"] == "0.8b:q4_k_m")
    assert row["status"] == "partial" and row["have_bytes"] == have
    hub.faults.__init__()  # the network is back
    before = len(hub.responses)
    second = cli("pull", "0.8b:q4_k_m")
    assert second.returncode == 0, second.stderr
    assert hub.served_since(before) == len(model_bytes) - have  # only the rest
    blob = hub_dir(isolated_home) / "blobs" / hashlib.sha256(model_bytes).hexdigest()
    assert blob.read_bytes() == model_bytes
    assert not partial.exists()


def test_a_killed_pull_resumes_across_processes(hub, isolated_home, model_bytes):
    # ~6.5 MB/s: huggingface_hub writes in 10 MB chunks, so the first lands in ~1.5 s, and the
    # whole file would take half a minute: killed mid-way
    hub.faults.delay = 0.01
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenlocal", "pull", "0.8b:q4_k_m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline:
        partial = next(hub_dir(isolated_home).glob("blobs/*.incomplete"), None)
        if partial and partial.stat().st_size > 1 << 20:  # a first MiB kept: killed mid-way
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = partial.stat().st_size
    assert 0 < have < len(model_bytes)
    hub.faults.delay = 0
    before = len(hub.responses)
    result = subprocess.run([sys.executable, "-m", "qwenlocal", "pull", "0.8b:q4_k_m"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert b"resuming" in result.stderr
    assert hub.served_since(before) == len(model_bytes) - have  # only the rest
    blobs = sorted(p.name for p in (hub_dir(isolated_home) / "blobs").iterdir())
    assert blobs == [hashlib.sha256(model_bytes).hexdigest()]  # no orphan partial left behind


def test_wrong_bytes_fail_the_hash_check_and_leave_nothing(cli, hub, isolated_home):
    hub.faults.corrupt = True
    result = cli("pull", "0.8b:q4_k_m")
    assert result.returncode == ExitCode.CHECKSUM, result.stderr
    assert b"sha256" in result.stderr and b"removed" in result.stderr
    repo = hub_dir(isolated_home)
    assert not list(repo.glob("blobs/*")) and not list(repo.glob("snapshots/*/*"))
    assert cli("run", "-m", "0.8b:q4_k_m", "hi").returncode == ExitCode.NOT_DOWNLOADED


@pytest.mark.slow  # its own step: `pytest -m slow`
@pytest.mark.parametrize(
    "status, error_code, exit_code",
    [
        (404, "RepoNotFound", ExitCode.HUB_NOT_FOUND),
        (404, "EntryNotFound", ExitCode.HUB_NOT_FOUND),
        (401, None, ExitCode.HUB_AUTH),
        (403, "GatedRepo", ExitCode.HUB_AUTH),
        (500, None, ExitCode.NETWORK),
    ],
)
def test_hub_errors_have_their_own_exit_codes(cli, hub, status, error_code, exit_code):
    hub.faults.status, hub.faults.error_code = status, error_code
    result = cli("pull", "0.8b:q4_k_m")
    assert result.returncode == exit_code, result.stderr
    assert b"Traceback" not in result.stderr and b"hint:" in result.stderr.splitlines()[-1]


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_a_missing_default_source_falls_back_to_an_alternate(cli, hub, model_bytes, isolated_home):
    hub.files.clear()
    hub.add("bartowski/Qwen_Qwen3.5-0.8B-GGUF", "Qwen_Qwen3.5-0.8B-Q4_K_M.gguf", model_bytes)
    result = cli("pull", "0.8b:q4_k_m")
    assert result.returncode == 0, result.stderr
    assert b"trying the next source" in result.stderr
    assert cli("run", "-m", "0.8b:q4_k_m", "hi", env={"HF_HUB_OFFLINE": "1"}).returncode == 0


def test_network_down(cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    result = cli("pull", "0.8b:q4_k_m")
    assert result.returncode == ExitCode.NETWORK and b"cannot reach the hub" in result.stderr


def test_offline_without_the_file(cli, hub):
    for args, env in ((["--offline"], {}), ([], {"HF_HUB_OFFLINE": "1"})):
        result = cli("pull", "0.8b:q4_k_m", *args, env=env)
        assert result.returncode == ExitCode.OFFLINE and b"offline" in result.stderr
    assert hub.bytes_served == 0


def test_not_enough_disk_space_is_refused_with_the_numbers(tmp_path):
    from qwenlocal.errors import QwenlocalError
    from qwenlocal.models.download import _check_space

    with pytest.raises(QwenlocalError) as err:
        _check_space(tmp_path, 10**18)
    assert err.value.code == ExitCode.DISK_FULL and "GB more needed" in err.value.message


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_first_use_needs_pull_when_not_on_a_tty(cli, hub):
    refused = cli("run", "-m", "0.8b:q4_k_m", "--no-think", "hi")
    assert refused.returncode == ExitCode.NOT_DOWNLOADED and b"--pull" in refused.stderr
    assert hub.bytes_served == 0
    pulled = cli("run", "-m", "0.8b:q4_k_m", "--no-think", "--pull", "hi")
    assert pulled.returncode == 0 and pulled.stdout.decode() == ANSWER + "\n"


def test_progress_lines_on_stderr_when_not_a_tty(cli, hub):
    result = cli("pull", "0.8b:q4_k_m")
    assert b"MB/s" in result.stderr and b"100%" in result.stderr
    assert b"resuming" not in result.stderr  # nothing was on disk: a first download, said as one
    assert result.stdout.count(b"\n") == 1  # stdout: the path alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/sys is Linux's")
def test_an_unwritable_hf_home_is_named_with_the_fix(cli, hub):
    result = cli("pull", "0.8b:q4_k_m", env={"HF_HOME": "/sys/qwenlocal-test"})  # refused even to root
    err = result.stderr.decode()
    assert result.returncode == ExitCode.NOT_WRITABLE, err
    assert err.startswith("qwenlocal: error: cannot write to /sys/qwenlocal-test") and "HF_HOME" in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_list_show_and_rm_tell_the_truth(cli, hub, isolated_home, model_bytes, tmp_path):
    assert cli("pull", "0.8b:q4_k_m").returncode == 0
    rows = {r["name"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert rows["0.8b:q4_k_m"]["status"] == "downloaded" and rows["0.8b:q4_k_m"]["bytes"] == len(model_bytes)
    assert rows["9b:q8_0"]["status"] == "not downloaded" and len(rows) >= 16
    assert "fits" in rows["9b:q8_0"]
    text = cli("ls").stdout.decode()
    assert "0.8b:q4_k_m" in text and "downloaded" in text

    shown = json.loads(cli("show", "0.8b:q4_k_m", "--json").stdout)
    assert shown["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert shown["architecture"] == "qwen35" and shown["chat_template"] is True
    assert shown["bytes"] == len(model_bytes) and shown["parameters"] > 0 and shown["layers"] == 4
    assert shown["quantization"] == "ALL_F32" and shown["context_length"] == 262144
    local = tmp_path / "copy.gguf"
    local.write_bytes(model_bytes)
    assert json.loads(cli("show", str(local), "--json").stdout)["sha256"] == shown["sha256"]

    refused = cli("rm", "0.8b:q4_k_m")
    assert refused.returncode == ExitCode.USAGE and b"--yes" in refused.stderr
    removed = json.loads(cli("rm", "0.8b", "--yes", "--json").stdout)
    assert removed == {"removed": ["0.8b:q4_k_m"], "freed_bytes": len(model_bytes)}
    assert not list(hub_dir(isolated_home).glob("blobs/*"))
    rows = {r["name"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert rows["0.8b:q4_k_m"]["status"] == "not downloaded"
    assert cli("rm", "0.8b", "--yes").returncode == ExitCode.NOT_DOWNLOADED
    assert cli("show", "0.8b:q4_k_m").returncode == ExitCode.NOT_DOWNLOADED


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_rm_removes_partial_downloads(cli, hub, isolated_home, model_bytes):
    hub.faults.drop_after, hub.faults.broken_after_drop = len(model_bytes) - 1000, True
    assert cli("pull", "0.8b:q4_k_m").returncode == ExitCode.NETWORK
    partial = next(hub_dir(isolated_home).glob("blobs/*.incomplete"))
    have = partial.stat().st_size
    removed = json.loads(cli("rm", "0.8b:q4_k_m", "--yes", "--json").stdout)
    assert removed["freed_bytes"] == have > 0
    assert not list(hub_dir(isolated_home).glob("blobs/*"))


@pytest.mark.slow  # its own step: `pytest -m slow`
def test_first_use_on_a_tty_asks_then_pulls(hub):
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "run", "-m", "0.8b:q4_k_m", "--no-think", "hi"],
        env=dict(os.environ),
        timeout=60,
        dimensions=(40, 120),
    )
    child.expect("Download it now")
    child.sendline("y")
    child.expect("The end")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert hub.served_since(0) > 0


def test_declining_the_download_changes_nothing(hub, isolated_home):
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "qwenlocal", "run", "-m", "0.8b:q4_k_m", "hi"],
        env=dict(os.environ),
        timeout=60,
    )
    child.expect("Download it now")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.NOT_DOWNLOADED and hub.bytes_served == 0
    assert not hub_dir(isolated_home).exists() or not list(hub_dir(isolated_home).glob("blobs/*"))


def test_list_shows_other_ggufs_in_the_cache(cli, isolated_home, model_bytes):
    """Files other tools downloaded into the shared cache are listed too."""
    repo = isolated_home / "hf" / "hub" / "models--someone--other-GGUF"
    blob = repo / "blobs" / ("0" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(model_bytes)
    pointer = repo / "snapshots" / COMMIT / "other-Q4_K_M.gguf"
    pointer.parent.mkdir(parents=True)
    pointer.symlink_to(blob)
    rows = {r["name"]: r for r in json.loads(cli("list", "--json").stdout)}
    row = rows["someone/other-GGUF/other-Q4_K_M.gguf"]
    assert row["status"] == "downloaded" and row["bytes"] == len(model_bytes) and row["fits"] is True
