"""Split a recipe's input into tasks and its steps into passes.

A *task* is a slice of the input: one file's range of at most
``execution.docs_per_task`` records (big files are split), or a group of that
many text files. Tasks are numbered in source order, then file order, so the
same recipe over the same files always gives the same tasks.

A *pass* runs the per-document steps between two cross-shard (dedup) steps on
every task. Pass k (k > 0) starts by applying the cross-shard step that ended
pass k-1, whose phase 1 wrote signatures and whose global phase combined them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from lm.data.prepare.inputs import file_format
from lm.data.prepare.recipe import Recipe, StepSpec
from lm.data.prepare.sources import count_records
from lm.data.prepare.steps import is_cross_shard, step_class


@dataclass(frozen=True)
class Task:
    id: str
    source: str
    root: str
    files: tuple[str, ...]  # several only for a group of text files
    format: str
    start: int = 0
    stop: int | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Task:
        return cls(**{**obj, "files": tuple(obj["files"])})


@dataclass(frozen=True)
class Pass:
    index: int
    apply: StepSpec | None  # the cross-shard step whose results this pass applies first
    steps: tuple[StepSpec, ...]  # per-document steps, in order
    collect: StepSpec | None  # the cross-shard step whose signatures this pass writes last


def plan_tasks(recipe: Recipe, inputs: dict) -> list[Task]:
    """Every task of the recipe's sources, whose files `inputs` lists (`inputs.scan_inputs`),
    in a fixed order."""
    per_task = recipe.settings["execution"]["docs_per_task"]
    slices: list[dict] = []
    for source, scanned in zip(recipe.sources, inputs["sources"]):
        if source.path.startswith("hf:"):
            slices.append(dict(source=source.name, root="", files=(source.path,), format="hf"))
            continue
        root = Path(scanned["root"])
        files = [root / f for f, _, _ in scanned["files"]]
        group: list[str] = []  # consecutive text files, one document each
        for f in files:
            fmt = file_format(f, source.format)
            if fmt == "text":
                group.append(str(f))
            if group and (fmt != "text" or len(group) == per_task or f == files[-1]):
                slices.append(dict(source=source.name, root=str(root), files=tuple(group), format="text"))
                group = []
            if fmt == "text":
                continue
            count = count_records(f, fmt)
            for start in range(0, max(count, 1), per_task):  # an empty file still gets its (empty) task
                stop = start + per_task if start + per_task < count else None
                slices.append(dict(source=source.name, root=str(root), files=(str(f),), format=fmt,
                                   start=start, stop=stop))
    return [Task(id=f"t{i:05d}", **s) for i, s in enumerate(slices)]


def plan_passes(steps: tuple[StepSpec, ...]) -> list[Pass]:
    """Cut the steps at every cross-shard step into passes."""
    passes: list[Pass] = []
    apply, current = None, []
    for spec in steps:
        if is_cross_shard(step_class(spec.name)):
            passes.append(Pass(len(passes), apply, tuple(current), spec))
            apply, current = spec, []
        else:
            current.append(spec)
    passes.append(Pass(len(passes), apply, tuple(current), None))
    return passes
