"""Data recipes: a Python file whose `get_recipe()` returns a dict (or ConfigDict), validated.

A recipe names the sources, the ordered steps and the output settings::

    def get_recipe():
        return {
            "sources": [{"name": "wiki", "path": "data/wiki/*.jsonl.zst", "text_field": "text"},
                        {"name": "reviews", "path": "reviews.csv", "csv_column": "review"}],
            "steps": [{"step": "normalize"}, {"step": "langid"},
                      {"step": "language", "keep": {"en": 0.65, "zh": 0.65}},
                      {"step": "gopher_quality"}, {"step": "pii"}, {"step": "exact_dedup"}],
            "tokenizer": {"vocab_size": 4096},
            "mixture": {"temperature": 2.0},
        }

Each step is ``{"step": NAME, **keyword arguments of its class}`` (`steps.known_steps()`);
dedup settings are the keyword arguments of the dedup steps (e.g. ``{"step":
"minhash_dedup", "bands": 14, "rows": 8, "shingle": "word", "ngram": 5}``), which run
across all shards at their place in the order. Steps run in the order given; a name
appears at most once.
Sections and their defaults are in `DEFAULTS`; `SOURCE_DEFAULTS` holds a source's.
A source's `path` is a file, a directory (a text tree or a folder of data files), a
glob, or ``hf:NAME[:CONFIG]``; relative paths are taken from the recipe file's folder.
`format` "auto" picks by suffix (`sources.FORMATS`). Every error names the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections

from lm.config import ConfigError, call_python_file
from lm.data.prepare import steps as step_registry
from lm.data.prepare.sources import FORMATS
from lm.data.settings import merge_settings

GROUP_BY = ("source", "lang", "none")
SCORE_FILTER = "score_filter"
SOURCE_DEFAULTS: dict[str, Any] = {
    "name": None,  # required: a short identifier ([A-Za-z0-9_-]), used in ids and token dirs
    "path": None,  # required
    "format": "auto",
    "text_field": "text",  # jsonl / parquet / hf
    "csv_column": "text",  # csv
    "doc_separator": "",  # text files: a regex (multiline) splitting a file into documents; "": one per file
    "hf_split": "train",
    "limit": 0,  # read at most this many records of a streamed hf source (0: all)
}
DEFAULTS: dict[str, Any] = {
    "sources": None,  # required, a non-empty list
    "steps": [],
    "input": {"max_doc_chars": 1_000_000},  # longer documents are quarantined
    "execution": {"docs_per_task": 20_000},  # input records per task (big files are split)
    "output": {"docs_per_shard": 50_000, "removed_text_chars": 1_000, "examples_per_reason": 3},
    "tokenizer": {"vocab_size": 4096, "model_type": "bpe", "byte_fallback": True, "split_digits": True,
                  "max_sentences": 1_000_000, "seed": 0},
    # token shards per source, per language, or all in one; heldout_fraction of the documents
    # (chosen by a hash of their text) go to heldout/<group>/ instead of tokens/<group>/
    "tokens": {"group_by": "source", "heldout_fraction": 0.01},
    "mixture": None,  # see lm.data.prepare.mixture.MixtureSpec; None: no mixture
}
_OPTIONAL_SECTIONS = ("tokenizer",)  # None: do not train a tokenizer (nor write token shards)
_POSITIVE_INTS = {
    ("input", "max_doc_chars"), ("execution", "docs_per_task"), ("output", "docs_per_shard"),
    ("tokenizer", "vocab_size"), ("tokenizer", "max_sentences"),
}


@dataclass(frozen=True)
class SourceSpec:
    name: str
    path: str
    format: str
    text_field: str
    csv_column: str
    doc_separator: str
    hf_split: str
    limit: int


@dataclass(frozen=True)
class StepSpec:
    """One recipe step: a registered name (or "module:Class") and its keyword arguments."""

    name: str
    kwargs: dict


@dataclass(frozen=True)
class Recipe:
    sources: tuple[SourceSpec, ...]
    steps: tuple[StepSpec, ...]
    settings: dict  # the validated dict with every default filled in (JSON-able)

    def fingerprint_json(self) -> str:
        """The settings as canonical JSON: two runs with the same text prepare the same data."""
        return json.dumps(self.settings, sort_keys=True, ensure_ascii=False)


def load_recipe(path: str | Path) -> Recipe:
    """Call `get_recipe()` in the Python file `path` and validate what it returns."""
    path = Path(path)
    raw = call_python_file(path, "get_recipe", kind="recipe")
    return validate_recipe(raw, base_dir=path.resolve().parent)


def validate_recipe(raw: Any, *, base_dir: Path) -> Recipe:
    """Check every field and fill in defaults; raise ConfigError naming the field and the fix."""
    if isinstance(raw, ml_collections.ConfigDict):
        raw = raw.to_dict()
    if not isinstance(raw, dict):
        raise ConfigError(f"get_recipe() must return a dict or ConfigDict, got {type(raw).__name__}")
    settings = _merge_defaults(raw, DEFAULTS, "")
    for section, key in _POSITIVE_INTS:
        if settings[section] is not None:
            _check_positive_int(settings[section][key], f"{section}.{key}")
    if settings["tokenizer"] is not None and settings["tokenizer"]["model_type"] not in ("bpe", "unigram"):
        raise ConfigError(f"recipe field 'tokenizer.model_type': {settings['tokenizer']['model_type']!r} "
                          "is not one of ('bpe', 'unigram')")
    if settings["tokens"]["group_by"] not in GROUP_BY:
        raise ConfigError(f"recipe field 'tokens.group_by': {settings['tokens']['group_by']!r} "
                          f"is not one of {GROUP_BY}")
    fraction = settings["tokens"]["heldout_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"recipe field 'tokens.heldout_fraction': {fraction!r} must be a number in [0, 1) "
                          "(0: no held-out split)")
    sources = _sources(settings, base_dir)
    steps = _steps(settings["steps"])
    if settings["mixture"] is not None:
        from lm.data.prepare.mixture import MixtureSpec

        try:
            MixtureSpec.from_dict(settings["mixture"])
        except ValueError as e:
            raise ConfigError(f"recipe field 'mixture': {e}") from e
    try:
        json.dumps(settings)
    except TypeError as e:
        raise ConfigError(f"recipe values must be plain JSON values (numbers, strings, lists, dicts): {e}") from e
    return Recipe(sources=sources, steps=steps, settings=settings)


def _merge_defaults(raw: dict, defaults: dict, where: str) -> dict:
    return merge_settings(raw, defaults, kind="recipe", where=where, nullable=_OPTIONAL_SECTIONS)


def _check_positive_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"recipe field {field!r}: {value!r} must be a positive integer")


def _sources(settings: dict, base_dir: Path) -> tuple[SourceSpec, ...]:
    raw_sources = settings["sources"]
    if not isinstance(raw_sources, (list, tuple)) or not raw_sources:
        raise ConfigError("recipe field 'sources' must be a non-empty list of {'name': ..., 'path': ...} dicts")
    specs, names = [], set()
    for i, raw in enumerate(raw_sources):
        where = f"sources[{i}]."
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe field 'sources[{i}]' must be a dict, got {type(raw).__name__}")
        s = _merge_defaults(raw, SOURCE_DEFAULTS, where)
        for key in ("name", "path"):
            if not isinstance(s[key], str) or not s[key]:
                raise ConfigError(f"recipe field {where + key!r} is required (a non-empty string)")
        if not s["name"].replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"recipe field {where + 'name'!r}: {s['name']!r} may hold only letters, "
                              "digits, '_' and '-'")
        if s["name"] in names:
            raise ConfigError(f"recipe field {where + 'name'!r}: {s['name']!r} is used by two sources; "
                              "names must differ")
        names.add(s["name"])
        if s["format"] not in ("auto", *FORMATS):
            raise ConfigError(f"recipe field {where + 'format'!r}: {s['format']!r} is not one of "
                              f"{('auto', *FORMATS)}")
        try:
            re.compile(s["doc_separator"], re.MULTILINE)
        except (re.error, TypeError) as e:
            raise ConfigError(f"recipe field {where + 'doc_separator'!r}: {s['doc_separator']!r} "
                              f"is not a regex ({e})") from e
        if isinstance(s["limit"], bool) or not isinstance(s["limit"], int) or s["limit"] < 0:
            raise ConfigError(f"recipe field {where + 'limit'!r}: {s['limit']!r} must be an integer >= 0")
        path = s["path"]
        if not path.startswith("hf:") and not Path(path).is_absolute():
            path = str(base_dir / path)
        s["path"] = path
        raw_sources[i] = s
        specs.append(SourceSpec(**s))
    return tuple(specs)


def _steps(raw_steps: Any) -> tuple[StepSpec, ...]:
    if not isinstance(raw_steps, (list, tuple)):
        raise ConfigError("recipe field 'steps' must be a list of {'step': NAME, **kwargs} dicts")
    specs, seen = [], set()
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("step"), str):
            raise ConfigError(f"recipe field 'steps[{i}]' must be a dict with a 'step' key naming a step, got {raw!r}")
        kwargs = {k: v for k, v in raw.items() if k != "step"}
        spec = StepSpec(name=raw["step"], kwargs=kwargs)
        try:
            step_registry.check_step(spec.name, kwargs)
        except step_registry.StepError as e:
            if e.argument is not None:
                raise ConfigError(f"recipe field 'steps[{i}].{e.argument}': {e}") from e
            raise ConfigError(f"recipe field 'steps[{i}]': {e}") from e
        if spec.name in seen:
            raise ConfigError(f"recipe field 'steps[{i}]': step {spec.name!r} appears twice; each step runs once")
        if spec.name == SCORE_FILTER and kwargs.get("score") not in seen:
            raise ConfigError(f"recipe field 'steps[{i}].score': {kwargs.get('score')!r} is not a step before this "
                              f"one; a score_filter reads the score a classifier step stored earlier "
                              f"(steps so far: {sorted(seen)})")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)
