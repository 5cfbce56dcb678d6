"""The one build step pyproject.toml cannot say: the wheel carries the repository's top-level
models.toml (the catalog) inside the package, where qwenlocal/models/catalog.py looks first. A checkout
or an editable install reads the top-level file itself."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.copy_file("models.toml", str(Path(self.build_lib) / "qwenlocal" / "models.toml"))


setup(cmdclass={"build_py": BuildPy})
