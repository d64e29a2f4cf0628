"""A task file (YAML or JSON, in experiments/tasks/ or anywhere) and its validation.

    kind: multiple_choice          # or: generate
    description: ""                # text before the shots (optional)
    source:                        # exactly one of generator / csv / jsonl
      generator: kv_recall         # a function of lm.tasks.generators
      params: {pairs: 4}           # its keyword arguments
      size: 300                    # examples (csv / jsonl: a seeded sample of this many rows)
      seed: 0
      # csv: ../data.csv  or  jsonl: ../data.jsonl   (relative to the task file)
      # max_chars: {review: 60}    rows with a longer field are dropped
    prompt: "{question}"           # str.format template over an example's fields
    answer: answer                 # field: the target text (generate), the index or text of
                                   # the correct choice (multiple_choice)
    choices: [" no", " yes"]       # multiple_choice: fixed choices, or a field holding a list
    delimiter: " "                 # between the prompt and the answer
    fewshot: {num: 2, seed: 1234, pool: 16, separator: "\\n"}
    generation: {stop: ["\\n"], max_new_tokens: 16, extract: "", strip: true}

Few-shot examples are drawn from the first `pool` examples, which are never evaluated.
Every error names the file and the field in one line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from lm.errors import ConfigError

TASKS_DIR = Path(__file__).resolve().parents[2] / "experiments" / "tasks"
KINDS = ("multiple_choice", "generate")
SUFFIXES = (".yaml", ".yml", ".json")


class TaskError(ConfigError):
    """A task file is missing, malformed or names a bad value; the message says where."""


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # generator | csv | jsonl
    target: str  # generator name or data file path (resolved)
    params: dict[str, Any]
    size: int
    seed: int
    max_chars: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    path: Path
    kind: str
    description: str
    source: Source
    prompt: str
    answer: str
    choices: list[str] | str | None
    delimiter: str
    num_fewshot: int
    fewshot_seed: int
    fewshot_pool: int
    separator: str
    stop: list[str]
    max_new_tokens: int
    extract: str
    strip: bool


TOP = {"name": str, "kind": str, "description": str, "source": dict, "prompt": str, "answer": str,
       "choices": (list, str), "delimiter": str, "fewshot": dict, "generation": dict}
SOURCE = {"generator": str, "csv": str, "jsonl": str, "params": dict, "size": int, "seed": int,
          "max_chars": dict}
FEWSHOT = {"num": int, "seed": int, "pool": int, "separator": str}
GENERATION = {"stop": list, "max_new_tokens": int, "extract": str, "strip": bool}


def find_task(name_or_path: str) -> Path:
    """A task file: an existing path, or the name of a file in experiments/tasks/."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for suffix in SUFFIXES:
        if (TASKS_DIR / f"{name_or_path}{suffix}").is_file():
            return TASKS_DIR / f"{name_or_path}{suffix}"
    known = sorted(p.stem for p in TASKS_DIR.glob("*") if p.suffix in SUFFIXES)
    raise TaskError(f"task {name_or_path!r} is neither a file nor a task in {TASKS_DIR} "
                    f"(known: {', '.join(known) or 'none'})")


def load_task(name_or_path: str) -> Task:
    """Read and validate a task file (see the module docstring)."""
    path = find_task(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise TaskError(f"{path}{where}: not valid YAML/JSON ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: a task file holds a mapping of fields, not {type(raw).__name__}")
    return _task(path, raw)


def _check(path: Path, where: str, raw: dict, fields: dict[str, Any]) -> dict:
    for key, value in raw.items():
        if key not in fields:
            raise TaskError(f"{path}: unknown field {where}{key} (known: {', '.join(fields)})")
        expected = fields[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            names = "/".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise TaskError(f"{path}: field {where}{key} must be a {names}, not {value!r}")
    return raw


def _task(path: Path, raw: dict) -> Task:
    _check(path, "", raw, TOP)
    for required in ("kind", "source", "prompt", "answer"):
        if required not in raw:
            raise TaskError(f"{path}: field {required} is missing")
    kind = raw["kind"]
    if kind not in KINDS:
        raise TaskError(f"{path}: field kind must be one of {', '.join(KINDS)}, not {kind!r}")
    choices = raw.get("choices")
    if (kind == "multiple_choice") != (choices is not None):
        raise TaskError(f"{path}: field choices is required by kind multiple_choice and only by it")
    if isinstance(choices, list) and (len(choices) < 2 or not all(isinstance(c, str) for c in choices)):
        raise TaskError(f"{path}: field choices must list two or more strings (or name a field)")
    if "generation" in raw and kind != "generate":
        raise TaskError(f"{path}: field generation applies to kind generate only")
    fewshot = _check(path, "fewshot.", raw.get("fewshot", {}), FEWSHOT)
    generation = _check(path, "generation.", raw.get("generation", {}), GENERATION)
    stop = generation.get("stop", ["\n"])
    if not all(isinstance(s, str) and s for s in stop):
        raise TaskError(f"{path}: field generation.stop must list non-empty strings, not {stop!r}")
    task = Task(name=raw.get("name", path.stem), path=path, kind=kind,
                description=raw.get("description", ""), source=_source(path, raw["source"]),
                prompt=raw["prompt"], answer=raw["answer"], choices=choices,
                delimiter=raw.get("delimiter", " "), num_fewshot=fewshot.get("num", 0),
                fewshot_seed=fewshot.get("seed", 1234), fewshot_pool=fewshot.get("pool", 16),
                separator=fewshot.get("separator", "\n\n"), stop=stop,
                max_new_tokens=generation.get("max_new_tokens", 32),
                extract=generation.get("extract", ""), strip=generation.get("strip", True))
    for field, value, low in (("fewshot.num", task.num_fewshot, 0), ("fewshot.pool", task.fewshot_pool, 0),
                              ("generation.max_new_tokens", task.max_new_tokens, 1),
                              ("source.size", task.source.size, 1)):
        if value < low:
            raise TaskError(f"{path}: field {field} must be at least {low}, not {value}")
    if task.num_fewshot > task.fewshot_pool:
        raise TaskError(f"{path}: field fewshot.num ({task.num_fewshot}) exceeds fewshot.pool "
                        f"({task.fewshot_pool})")
    if task.fewshot_pool >= task.source.size:
        raise TaskError(f"{path}: field source.size ({task.source.size}) must exceed fewshot.pool "
                        f"({task.fewshot_pool}), which is never evaluated")
    if task.extract:
        try:
            re.compile(task.extract)
        except re.error as err:
            raise TaskError(f"{path}: field generation.extract is not a regular expression ({err})") from None
    return task


def _source(path: Path, raw: dict) -> Source:
    _check(path, "source.", raw, SOURCE)
    kinds = [k for k in ("generator", "csv", "jsonl") if k in raw]
    if len(kinds) != 1:
        raise TaskError(f"{path}: field source needs exactly one of generator, csv, jsonl (has {kinds or 'none'})")
    kind = kinds[0]
    target = raw[kind]
    if kind == "generator":
        from lm.tasks.generators import GENERATORS, check_params
        if target not in GENERATORS:
            raise TaskError(f"{path}: field source.generator {target!r} is not one of {', '.join(GENERATORS)}")
        problem = check_params(target, raw.get("params", {}))
        if problem:
            raise TaskError(f"{path}: field source.params: {problem}")
    else:
        if "params" in raw:
            raise TaskError(f"{path}: field source.params applies to a generator only")
        target = str((path.parent / target).resolve()) if not Path(target).is_absolute() else target
    max_chars = raw.get("max_chars", {})
    if not all(isinstance(v, int) and v > 0 for v in max_chars.values()):
        raise TaskError(f"{path}: field source.max_chars maps fields to positive lengths, not {max_chars!r}")
    if "size" not in raw:
        raise TaskError(f"{path}: field source.size is missing")
    return Source(kind=kind, target=target, params=raw.get("params", {}), size=raw["size"],
                  seed=raw.get("seed", 0), max_chars=max_chars)
