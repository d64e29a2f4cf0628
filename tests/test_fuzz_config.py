"""Property-based tests of config overrides and experiment files: whatever a user types, the
answer is a valid config or one ConfigError naming the field, never another exception."""

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lm.config import ConfigError, apply_overrides, default_config, load_config, validate

FIELDS = [f"{section}.{key}" for section, values in default_config().items()
          if hasattr(values, "items") for key in values.keys()]
VALUES = st.one_of(
    st.text(max_size=12), st.integers(-10**6, 10**20).map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["true", "false", "None", "[]", "()", "{}", "'a,b'", "1e999", "-0", "(1,", "[[[[",
                     "nan", "inf", "0x10", "1_000", "b'x'", "{'a': 1}", "lambda: 1", "__import__('os')"]))
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=20).map(lambda s: f"train.{s}"),
                 st.text(max_size=20))


def outcome(overrides: list[str]):
    try:
        cfg = validate(apply_overrides(default_config(), overrides))
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message
        return None
    return cfg


def check_finite_numbers(cfg) -> None:
    for section in cfg.values():
        if hasattr(section, "items"):
            for value in section.values():
                if isinstance(value, float):
                    assert math.isfinite(value)


def check_overrides(pairs: list[tuple[str, str]]) -> None:
    cfg = outcome([f"--config.{key}={value}" for key, value in pairs])
    if cfg is not None:
        check_finite_numbers(cfg)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, VALUES), max_size=3))
def test_random_overrides_give_a_config_or_one_config_error(pairs):
    check_overrides(pairs)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_random_argument_text_is_refused_with_a_config_error(text):
    cfg = outcome([text])
    assert cfg is None or text.startswith("--config.") or text.startswith("config.")


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, VALUES), max_size=5))
def test_many_random_overrides(pairs):
    check_overrides(pairs)


@pytest.mark.parametrize("override", ["--config.train.lr=1e999", "--config.train.lr=-1e999",
                                      "--config.model.norm_eps=1e400"])
def test_an_infinite_number_is_refused(override):
    key = override.split("=")[0].removeprefix("--config.")
    with pytest.raises(ConfigError, match=f"config field '{key}': expects a finite number, got -?inf"):
        load_config(None, [override])


@pytest.mark.parametrize("source, message", [
    ("def get_config(:\n", "config file {path}:1: invalid syntax"),
    ("import not_a_module_anywhere\n", "config file {path} failed to load: ModuleNotFoundError: "
     "No module named 'not_a_module_anywhere'"),
    ("def get_config():\n    return {'train': {'steps': 1 / 0}}\n",
     "config file {path}: get_config() raised ZeroDivisionError: division by zero"),
    ("def get_config():\n    return [1]\n", "get_config() must return a dict or ConfigDict, got list"),
    ("def get_config():\n    return {'train': 3}\n", "config field 'train': is a section; override its fields instead"),
    ("x = 1\n", "config file {path} defines no get_config()"),
])
def test_a_broken_experiment_file_is_one_line_naming_it(tmp_path, source, message):
    path = tmp_path / "exp.py"
    path.write_text(source)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(message.format(path=path))
