import pytest

from qwenlocal.config import load_settings
from qwenlocal.errors import Exit, QwenlocalError


def test_layers_override_in_order_and_remember_their_source(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('model = "4b"\ntemperature = 0.5\nthink = true\nctx = 8192\n')
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    env = {"QWENLOCAL_TEMPERATURE": "0.9", "QWENLOCAL_THINK": "off"}
    s = load_settings({"ctx": 4096, "seed": None}, env=env)
    assert (s.model, s.temperature, s.think, s.ctx, s.seed) == ("4b", 0.9, False, 4096, None)
    assert s.source("model").startswith("config file")
    assert s.source("temperature") == "QWENLOCAL_TEMPERATURE"
    assert s.source("ctx") == "command line" and s.source("seed") == "default"


def test_defaults_without_any_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(tmp_path / "missing.toml"))
    s = load_settings({}, env={})
    assert s.model is None and s.json is False and s.stdin_timeout == 3.0


@pytest.mark.parametrize(
    "text, words",
    [
        ("nonsense = 1\n", "unknown setting 'nonsense'"),
        ("ctx = 'big'\n", "invalid value"),
        ("ctx = [", "cannot read"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path, monkeypatch, text, words):
    config = tmp_path / "c.toml"
    config.write_text(text)
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    with pytest.raises(QwenlocalError) as err:
        load_settings({}, env={})
    assert err.value.code == Exit.USAGE and words in err.value.message


def test_bad_environment_values_name_the_variable():
    with pytest.raises(QwenlocalError) as err:
        load_settings({}, env={"QWENLOCAL_THINK": "maybe"})
    assert "QWENLOCAL_THINK" in err.value.message


def test_importing_the_package_does_no_work(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, qwenlocal.cli, qwenlocal.engine, qwenlocal.loader, qwenlocal.hardware; "
        "heavy = ('llama_cpp', 'huggingface_hub', 'rich.markdown', 'psutil', 'numpy'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    home = tmp_path / "fresh"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
    assert list(home.iterdir()) == []  # no folders created
