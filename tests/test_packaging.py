"""The catalog lives at the repository's top level and a built wheel carries it into the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_catalog_is_the_top_level_models_toml():
    from qwenlocal.models.catalog import bundled_path

    assert (ROOT / "models.toml").is_file() and not (ROOT / "qwenlocal" / "models.toml").exists()
    assert bundled_path() == ROOT / "models.toml"


def test_a_built_wheel_carries_the_catalog_and_reads_it(tmp_path):
    src = tmp_path / "src"  # a copy: building leaves build/ and *.egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "models.toml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "qwenlocal", src / "qwenlocal", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "."],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (src / "dist").glob("qwenlocal-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("qwenlocal/models.toml") == (ROOT / "models.toml").read_bytes()
        zf.extractall(site)
    # the installed package reads the copy inside it, not a top-level file next to it
    code = "from qwenlocal.models import catalog; print(catalog.bundled_path()); "
    code += "print(len(catalog.load().models))"
    shown = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    path, count = shown.stdout.split()
    assert Path(path) == site / "qwenlocal" / "models.toml" and int(count) == 4
