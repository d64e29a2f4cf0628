"""A task's examples, from a generator or a CSV / JSONL file, in a fixed seeded order."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from lm.tasks.generators import generate_examples
from lm.tasks.schema import Source, Task, TaskError


class TaskDataMissing(FileNotFoundError):
    """A task's data file is absent (for example the shared data beside the project)."""


def load_examples(task: Task) -> list[dict[str, Any]]:
    """`task.source.size` examples: generated with the source's seed, or that many rows of
    the file (after dropping rows over `max_chars`) sampled with the seed, in file order
    when the file has no more rows than that."""
    source = task.source
    if source.kind == "generator":
        return generate_examples(source.target, source.params, source.size, source.seed)
    rows = _read_rows(task, source)
    rows = [row for row in rows if all(len(str(row.get(f, ""))) <= n for f, n in source.max_chars.items())]
    if len(rows) > source.size:
        rows = random.Random(source.seed).sample(rows, source.size)
    if len(rows) <= task.fewshot_pool:
        raise TaskError(f"{task.path}: source {source.target} has {len(rows)} usable rows, no more than "
                        f"fewshot.pool ({task.fewshot_pool})")
    return rows


def _read_rows(task: Task, source: Source) -> list[dict[str, Any]]:
    path = Path(source.target)
    if not path.is_file():
        raise TaskDataMissing(f"{task.path}: source.{source.kind} {path} does not exist"
                              + (" (the shared data is expected in ../shared/data beside the project)"
                                 if "shared" in path.parts else ""))
    with path.open(encoding="utf-8", newline="") as f:
        if source.kind == "csv":
            return list(csv.DictReader(f))
        rows = []
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise TaskError(f"{path}:{number}: not a JSON line ({err.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise TaskError(f"{path}:{number}: a JSON line must be an object")
        return rows
