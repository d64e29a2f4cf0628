"""Classifier training files: a Python file whose `get_classifier()` returns a dict, validated.

`lm data train-classifier --config FILE --output MODEL` reads it (see
`train_command`). Either labelled rows of a CSV file (a toxicity-style classifier)::

    def get_classifier():
        return {
            "data": {"csv": "davidson_labeled_data.csv", "text_column": "tweet", "label_column": "class",
                     "positive": ["0", "1"]},          # "negative": [...]; default: every other value
            "backend": "fasttext",                   # or "lm" (the default)
            "fasttext": {"epoch": 10, "dim": 16},    # FastTextConfig fields (seed aside)
            "seed": 0,
        }

or a quality classifier, P(reference-like | text), from reference and raw text
sources (files, directories or ``hf:NAME``, read by `lm.data.read.iter_sources`)::

    "data": {"reference": ["wiki/"], "raw": ["crawl.jsonl.zst"], "text_field": "text", "limit": 50000},

Sections and their defaults are in `DEFAULTS`, `CSV_DATA`, `QUALITY_DATA`,
`LM_SETTINGS` and `FASTTEXT_SETTINGS`. The backend's settings sit under the
backend's name, so one file can hold both and ``--backend`` picks; `seed` seeds
either. Relative paths are taken from the file's folder. Every error is one line
naming the field (``classifier field 'data.text_column': ...``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ml_collections

from lm.config import ConfigError
from lm.data.classify.fasttext_model import FastTextConfig
from lm.data.classify.model import TrainConfig
from lm.data.classify.train import BACKENDS, DEFAULT_BACKEND
from lm.data.settings import merge_settings
from lm.pyfile import call_python_file

SUFFIX_OF_BACKEND = {"lm": ".npz", "fasttext": ".bin"}
FASTTEXT_LOSSES = ("softmax", "ns", "hs", "ova")
CSV_DATA: dict[str, Any] = {"csv": None, "text_column": "text", "label_column": "label", "positive": ["1"],
                            "negative": None}
QUALITY_DATA: dict[str, Any] = {"reference": None, "raw": None, "text_field": "text", "hf_split": "train",
                                "limit": 0}  # limit: read at most this many texts per side (0: all)
LM_SETTINGS: dict[str, Any] = {
    **{k: v for k, v in asdict(TrainConfig()).items() if k != "seed"}, "n_buckets": 1 << 20, "char_ngrams": 0}
FASTTEXT_SETTINGS: dict[str, Any] = {k: v for k, v in asdict(FastTextConfig()).items() if k != "seed"}
DEFAULTS: dict[str, Any] = {"data": None, "backend": DEFAULT_BACKEND, "seed": 0, "heldout_fraction": 0.1,
                            "threshold": 0.5, "lm": LM_SETTINGS, "fasttext": FASTTEXT_SETTINGS}
_AT_LEAST_ZERO = {"l2", "char_ngrams", "minn", "maxn"}  # every other number must be > 0


@dataclass(frozen=True)
class ClassifierSpec:
    """A validated training file: `data` holds CSV_DATA's or QUALITY_DATA's keys, all filled in."""

    data: dict
    backend: str
    seed: int
    heldout_fraction: float
    threshold: float
    lm: dict
    fasttext: dict

    @property
    def is_quality(self) -> bool:
        return "reference" in self.data

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{k: v for k, v in self.lm.items() if k not in ("n_buckets", "char_ngrams")},
                           seed=self.seed)

    def fasttext_config(self) -> FastTextConfig:
        return FastTextConfig(**self.fasttext, seed=self.seed)


def load_classifier_spec(path: str | Path, backend: str | None = None) -> ClassifierSpec:
    """Call `get_classifier()` in the Python file `path` and validate it; `backend` (from --backend) overrides."""
    path = Path(path)
    raw = call_python_file(path, "get_classifier", kind="classifier")
    if isinstance(raw, ml_collections.ConfigDict):
        raw = raw.to_dict()
    if not isinstance(raw, dict):
        raise ConfigError(f"classifier file {path}: get_classifier() must return a dict, got {type(raw).__name__}")
    if backend is not None:
        raw = {**raw, "backend": backend}
    return validate_classifier_spec(raw, base_dir=path.resolve().parent)


def validate_classifier_spec(raw: dict, *, base_dir: Path) -> ClassifierSpec:
    """Check every field and fill in defaults; ConfigError naming the field otherwise."""
    settings = _merge(raw, DEFAULTS, "")
    if settings["backend"] not in BACKENDS:
        raise ConfigError(f"classifier field 'backend': {settings['backend']!r} is not one of {BACKENDS}")
    _check_int(settings["seed"], "seed", minimum=0)
    _check_number(settings["heldout_fraction"], "heldout_fraction")
    if not 0 < settings["heldout_fraction"] < 1:
        raise ConfigError(f"classifier field 'heldout_fraction': {settings['heldout_fraction']!r} must be in (0, 1)")
    _check_number(settings["threshold"], "threshold")
    if not 0 <= settings["threshold"] <= 1:
        raise ConfigError(f"classifier field 'threshold': {settings['threshold']!r} must be in [0, 1]")
    for section in ("lm", "fasttext"):
        for key, value in settings[section].items():
            _check_setting(section, key, value)
    if settings["lm"]["n_buckets"] < 2:
        raise ConfigError(f"classifier field 'lm.n_buckets': {settings['lm']['n_buckets']!r} must be >= 2")
    if settings["fasttext"]["loss"] not in FASTTEXT_LOSSES:
        raise ConfigError(f"classifier field 'fasttext.loss': {settings['fasttext']['loss']!r} is not one of "
                          f"{FASTTEXT_LOSSES}")
    return ClassifierSpec(data=_data(settings["data"], base_dir), **{k: settings[k] for k in DEFAULTS if k != "data"})


def _merge(raw: dict, defaults: dict, where: str, suggest: list[str] | None = None) -> dict:
    """`defaults` updated by `raw` (lm.data.settings); a `seed` inside a backend's section
    points to the top-level one."""
    def seed_hint(key: str, at: str) -> str | None:
        return "; the seed is the top-level field 'seed', which seeds either backend" if key == "seed" and at else None

    return merge_settings(raw, defaults, kind="classifier", where=where, suggest=suggest or (), hint=seed_hint)


def _data(raw: Any, base_dir: Path) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError("classifier field 'data' is required: a dict naming a labelled CSV ({'csv': FILE, "
                          "'text_column': ..., 'label_column': ..., 'positive': [...]}) or quality sources "
                          "({'reference': [...], 'raw': [...]})")
    if "csv" in raw and ("reference" in raw or "raw" in raw):
        raise ConfigError("classifier field 'data': give a labelled 'csv' or 'reference' and 'raw' sources, not both")
    both_kinds = [*CSV_DATA, *QUALITY_DATA]
    if "reference" in raw or "raw" in raw:
        misplaced = sorted(set(raw) & set(CSV_DATA))
        if misplaced:
            raise ConfigError(f"classifier field 'data.{misplaced[0]}' is for a labelled CSV ('data.csv'); quality "
                              f"sources ('data.reference' and 'data.raw') take {sorted(QUALITY_DATA)}")
        data = _merge(raw, QUALITY_DATA, "data.", both_kinds)
        for key in ("reference", "raw"):
            data[key] = [_path(p, f"data.{key}", base_dir) for p in _string_list(data[key], f"data.{key}")]
        _check_int(data["limit"], "data.limit", minimum=0)
        for key in ("text_field", "hf_split"):
            _check_string(data[key], f"data.{key}")
        return data
    misplaced = sorted(set(raw) & set(QUALITY_DATA))
    if misplaced:
        raise ConfigError(f"classifier field 'data.{misplaced[0]}' is for quality sources ('data.reference' and "
                          f"'data.raw'); a labelled CSV takes {sorted(CSV_DATA)}")
    data = _merge(raw, CSV_DATA, "data.", both_kinds)
    if data["csv"] is None:
        raise ConfigError("classifier field 'data.csv' is required (a labelled CSV file), or give 'data.reference' "
                          "and 'data.raw' for a quality classifier")
    data["csv"] = _path(data["csv"], "data.csv", base_dir)
    for key in ("text_column", "label_column"):
        _check_string(data[key], f"data.{key}")
    data["positive"] = _label_values(data["positive"], "data.positive")
    if data["negative"] is not None:
        data["negative"] = _label_values(data["negative"], "data.negative")
        both = sorted(set(data["positive"]) & set(data["negative"]))
        if both:
            raise ConfigError(f"classifier field 'data.negative': {both[0]!r} is also in 'data.positive'")
    return data


def _string_list(value: Any, field: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"classifier field {field!r} is required: a path or a non-empty list of paths, "
                          f"got {value!r}")
    return list(values)


def _label_values(value: Any, field: str) -> list[str]:
    values = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if (not isinstance(values, (list, tuple)) or not values
            or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values)):
        raise ConfigError(f"classifier field {field!r}: {value!r} must be a non-empty list of label values "
                          "(strings or integers, as written in the label column)")
    return [str(v) for v in values]


def _path(value: str, field: str, base_dir: Path) -> str:
    _check_string(value, field)
    return value if value.startswith("hf:") or Path(value).is_absolute() else str(base_dir / value)


def _check_string(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"classifier field {field!r}: {value!r} must be a non-empty string")


def _check_int(value: Any, field: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"classifier field {field!r}: {value!r} must be an integer >= {minimum}")


def _check_number(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"classifier field {field!r}: {value!r} must be a number")


def _check_setting(section: str, key: str, value: Any) -> None:
    field = f"{section}.{key}"
    default = LM_SETTINGS[key] if section == "lm" else FASTTEXT_SETTINGS[key]
    if isinstance(default, str):
        _check_string(value, field)
    elif isinstance(default, int):
        _check_int(value, field, minimum=0 if key in _AT_LEAST_ZERO else 1)
    else:
        _check_number(value, field)
        if not (value >= 0 if key in _AT_LEAST_ZERO else value > 0):
            bound = ">= 0" if key in _AT_LEAST_ZERO else "> 0"
            raise ConfigError(f"classifier field {field!r}: {value!r} must be {bound}")
