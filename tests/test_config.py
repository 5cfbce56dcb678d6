import pytest

from qwenlocal.config import load_settings
from qwenlocal.errors import ExitCode, QwenlocalError


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
    assert err.value.code == ExitCode.USAGE and words in err.value.message


def test_bad_environment_values_name_the_variable():
    with pytest.raises(QwenlocalError) as err:
        load_settings({}, env={"QWENLOCAL_THINK": "maybe"})
    assert "QWENLOCAL_THINK" in err.value.message
    with pytest.raises(QwenlocalError) as err:  # how Python passes on bytes that are not UTF-8
        load_settings({}, env={"QWENLOCAL_SYSTEM": "caf\udce9"})
    assert "QWENLOCAL_SYSTEM" in err.value.message and err.value.code == ExitCode.USAGE


def test_importing_the_package_does_no_work(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, qwenlocal.cli, qwenlocal.engine, qwenlocal.models.loader, qwenlocal.models.hardware; "
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


# One bad value per bound: (setting, as TOML, as a flag value). Every layer must refuse it alike.
BAD = [
    ("ctx", "20", 20),  # llama.cpp aborted (GGML_ASSERT on n_batch)
    ("ctx", "-5", -5),
    ("ctx", "99999999999999999999", 99999999999999999999),  # wrapped llama.cpp's 32-bit n_ctx
    ("max_tokens", "0", 0),
    ("think_budget", "-1", -1),
    ("temperature", "-1.0", -1.0),
    ("temperature", "nan", float("nan")),
    ("threads", "-1", -1),
    ("threads", "100000", 100000),  # crashed llama.cpp (SIGSEGV)
    ("gpu_layers", "-2", -2),
    ("stdin_timeout", "inf", float("inf")),  # an internal error in select()
]


@pytest.mark.parametrize("name, toml, value", BAD)
def test_every_layer_refuses_the_same_bad_values(tmp_path, monkeypatch, name, toml, value):
    config = tmp_path / "c.toml"
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    env_name = f"QWENLOCAL_{name.upper()}"
    layers = {
        f"'{name}' in config file": ({}, {}, f"{name} = {toml}\n"),
        env_name: ({}, {env_name: str(value)}, ""),
        "--" + name.replace("_", "-"): ({name: value}, {}, ""),
    }
    for where, (flags, env, text) in layers.items():
        config.write_text(text)
        with pytest.raises(QwenlocalError) as err:
            load_settings(flags, env=env)
        assert err.value.code == ExitCode.USAGE and where in err.value.message, err.value.message
        assert "takes" in err.value.hint


@pytest.mark.parametrize(
    "text",
    [
        "system = {a = 1}",
        "model = 5",
        'model = ["4b"]',
        "think = 1",
        'json = "yes"',
        "ctx = 8192.0",
        "ctx = true",
        "seed = 1.5",
    ],
)
def test_config_file_values_must_have_the_setting_s_type(tmp_path, monkeypatch, text):
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    with pytest.raises(QwenlocalError) as err:
        load_settings({}, env={})
    assert err.value.code == ExitCode.USAGE and "invalid value" in err.value.message


def test_the_bounds_are_in_the_hint_and_their_ends_are_allowed(tmp_path, monkeypatch):
    from qwenlocal.config import MAX_CTX, MAX_THREADS, MIN_CTX

    monkeypatch.setenv("QWENLOCAL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(QwenlocalError) as err:
        load_settings({"ctx": MAX_CTX + 1}, env={})
    assert f"from {MIN_CTX} to {MAX_CTX}" in err.value.hint
    ends = {"ctx": MIN_CTX, "threads": MAX_THREADS, "temperature": 0.0, "think_budget": 0, "max_tokens": 1}
    ends |= {"gpu_layers": -1, "seed": -7, "stdin_timeout": 0.0}
    s = load_settings(ends, env={"QWENLOCAL_CTX": str(MAX_CTX), "QWENLOCAL_THREADS": "1"})
    assert (s.ctx, s.threads, s.temperature, s.seed) == (MIN_CTX, MAX_THREADS, 0.0, -7)
    config = tmp_path / "c.toml"
    config.write_text("temperature = 1\nstdin_timeout = 10\n")  # a TOML integer is a fine number
    monkeypatch.setenv("QWENLOCAL_CONFIG", str(config))
    s = load_settings({}, env={})
    assert (s.temperature, s.stdin_timeout) == (1.0, 10.0) and isinstance(s.temperature, float)
