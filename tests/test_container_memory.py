"""Memory inside a container: the cgroup's limit (v2 and v1), not the host's free RAM, is what the
pick, the context sizing and `doctor` plan for (a process over it is killed by the OOM killer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from qwenlocal.models import hardware
from qwenlocal.models.catalog import load
from qwenlocal.models.hardware import GiB, Want, detect, pick
from qwenlocal.models.memory import ContainerMemory, container_memory

MiB = 1 << 20


def tree(root: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text(proc_cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_limit_less_reclaimable_cache(tmp_path):
    root = tree(
        tmp_path,
        "0::/user.slice/job\n",
        {
            "user.slice/job/memory.max": f"{3 * GiB}\n",
            "user.slice/job/memory.current": f"{1 * GiB}\n",
            "user.slice/job/memory.stat": f"anon 1\ninactive_file {512 * MiB}\nactive_file 7\n",
            "user.slice/memory.max": "max\n",
            "memory.max": "max\n",
        },
    )
    assert container_memory(root) == ContainerMemory(3 * GiB, 3 * GiB - 512 * MiB)


def test_a_parents_tighter_limit_applies(tmp_path):
    root = tree(
        tmp_path,
        "0::/outer/inner\n",
        {
            "outer/inner/memory.max": "max\n",
            "outer/memory.max": f"{2 * GiB}\n",
            "outer/memory.current": f"{GiB}\n",
        },
    )
    assert container_memory(root) == ContainerMemory(2 * GiB, GiB)


def test_cgroup_v1_and_its_unlimited_value(tmp_path):
    v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    root = tree(
        tmp_path,
        v1,
        {
            "memory/docker/abc/memory.limit_in_bytes": f"{3 * GiB}\n",
            "memory/docker/abc/memory.usage_in_bytes": f"{GiB}\n",
            "memory/docker/abc/memory.stat": f"cache 5\ntotal_inactive_file {256 * MiB}\n",
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    assert container_memory(root) == ContainerMemory(3 * GiB, 2 * GiB + 256 * MiB)


def test_inside_a_container_without_a_cgroup_namespace(tmp_path):
    """/proc/self/cgroup names the host's path; the container sees its own cgroup as the mount."""
    root = tree(tmp_path, "0::/system.slice/docker-1234.scope\n", {"memory.max": f"{3 * GiB}\n"})
    assert container_memory(root) == ContainerMemory(3 * GiB, 3 * GiB)


@pytest.mark.parametrize(
    "cgroup, files",
    [
        ("0::/\n", {"memory.max": "max\n"}),
        ("0::/\n", {}),
        ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}),
        ("garbage", {}),
    ],
)
def test_no_limit(tmp_path, cgroup, files):
    assert container_memory(tree(tmp_path, cgroup, files)) is None


def test_no_proc_at_all(tmp_path):
    assert container_memory(tmp_path) is None


def three_gib_container(monkeypatch, tmp_path):
    root = tree(tmp_path, "0::/\n", {"memory.max": f"{3 * GiB}\n", "memory.current": f"{300 * MiB}\n"})
    monkeypatch.setattr("qwenlocal.models.memory.container_memory", lambda: container_memory(root))


def test_detect_reports_the_container_and_the_pick_plans_for_it(monkeypatch, tmp_path):
    host = detect(gpu_offload=False)
    if host.total_ram <= 4 * GiB:
        pytest.skip("this machine has no more RAM than the fake container")
    three_gib_container(monkeypatch, tmp_path)
    hw = detect(gpu_offload=False)
    assert hw.total_ram == hw.memory_limit == 3 * GiB
    assert hw.available_ram <= 3 * GiB - 300 * MiB
    choice = pick(hw, load())
    assert choice.memory_bytes < hw.available_ram
    # the case: 262K on 0.8B in 3 GiB (the loader refuses a choice that does not fit)
    refused = pick(hw, load(), Want(model=load().models["qwen3.5-0.8b"], n_ctx=262144))
    assert not refused.fits and "Nothing fits" in refused.reason
    assert refused.max_ctx < 262144


def test_doctor_names_the_container_limit(monkeypatch, tmp_path):
    from qwenlocal.testing.cli import run

    if detect(gpu_offload=False).total_ram <= 4 * GiB:
        pytest.skip("this machine has no more RAM than the fake container")
    three_gib_container(monkeypatch, tmp_path)
    result = run("doctor")
    assert result.code == 0, result.stderr
    line = next(line for line in result.stdout.decode().splitlines() if line.startswith("memory:"))
    assert line.endswith(" available of 3.0 GiB (container limit)"), line


def _child_cgroup() -> Path | None:
    """A real cgroup (v1 or v2) below ours that this process may create, or None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit = Path("/sys/fs/cgroup"), "memory.max"
        elif "memory" in controllers.split(","):
            base, limit = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"
        else:
            continue
        parent = base / path.strip("/")
        child = parent / f"qwenlocal-test-{uuid.uuid4().hex[:8]}"
        try:
            child.mkdir()
        except OSError:
            continue
        try:
            (child / limit).write_text(str(3 * GiB))
            return child
        except OSError:
            child.rmdir()
    return None


def test_doctor_in_a_real_three_gib_cgroup():
    """The issue's machine: a real cgroup limit, read by a real `qwenlocal doctor --json`."""
    if sys.platform != "linux" or detect(gpu_offload=False).total_ram <= 4 * GiB:
        pytest.skip("needs Linux with more RAM than 3 GiB")
    child = _child_cgroup()
    if child is None:
        pytest.skip("cannot create a cgroup here (not root, or no delegated memory controller)")
    try:
        script = f'echo $$ > "{child}/cgroup.procs" && exec "$@"'
        command = ["sh", "-c", script, "sh", sys.executable, "-m", "qwenlocal", "doctor", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"NO_COLOR": "1"})
        assert done.returncode == 0, done.stderr
        hw = json.loads(done.stdout)["hardware"]
        assert hw["total_ram"] == hw["memory_limit"] == 3 * GiB
        assert hw["available_ram"] <= 3 * GiB
    finally:
        child.rmdir()


def test_hardware_without_a_limit_is_unchanged():
    assert hardware.Hardware(8 * GiB, 6 * GiB, 4, 8).memory_limit is None
