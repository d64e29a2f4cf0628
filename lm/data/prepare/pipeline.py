"""One task of one pass: read records, run the steps, write what was kept, dropped and why.

`run_task` is what every executor runs (in-process, in a process pool, or as a
Ray task). Its outputs, under the run directory, are each written atomically,
and the done-marker last:

    work/pass-K/<task>.jsonl.zst          records kept by this pass
    work/pass-K/<task>.<step>.sig         signatures for the cross-shard step ending the pass
    removed/<task>.pK.jsonl.zst           dropped records: id, source, lang, step, reason, text
    quarantine/<task>.jsonl               (pass 0) input that could not become a record
    tasks/pass-K/<task>.json              the done-marker: this task's provenance counters

A task whose done-marker exists is skipped, so a rerun redoes only unfinished work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm.data.prepare.plan import Pass, Task
from lm.data.prepare.provenance import Provenance
from lm.data.prepare.quarantine import QuarantineEntry, write_quarantine
from lm.data.prepare.record import Record
from lm.data.prepare.output import read_jsonl_zst, write_jsonl_zst
from lm.data.prepare.sources import read_hf, read_records
from lm.data.prepare.steps import LANGID, LANGUAGE, build_step
from lm.data.read import DataError
from lm.files import write_json_atomic


@dataclass(frozen=True)
class TaskOptions:
    """What a task needs from the recipe besides its steps (plain values, picklable)."""

    max_doc_chars: int
    removed_text_chars: int
    examples_per_reason: int
    sources: dict  # source name -> {"text_field", "csv_column", "hf_split", "limit"}


def done_marker(run_dir: Path, pass_index: int, task_id: str) -> Path:
    return Path(run_dir) / "tasks" / f"pass-{pass_index}" / f"{task_id}.json"


def kept_path(run_dir: Path, pass_index: int, task_id: str) -> Path:
    return Path(run_dir) / "work" / f"pass-{pass_index}" / f"{task_id}.jsonl.zst"


def signature_path(run_dir: Path, pass_index: int, task_id: str, step: str) -> Path:
    return Path(run_dir) / "work" / f"pass-{pass_index}" / f"{task_id}.{step}.sig"


def combined_path(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / "work" / "cross_shard" / f"{step}.result"


def run_task(run_dir: str, task: Task, pass_: Pass, options: TaskOptions) -> str:
    """Run `pass_` over `task` (unless its done-marker exists); return the task id."""
    run_dir = Path(run_dir)
    marker = done_marker(run_dir, pass_.index, task.id)
    if marker.exists():
        return task.id
    for directory in (marker.parent, kept_path(run_dir, pass_.index, task.id).parent, run_dir / "removed"):
        directory.mkdir(parents=True, exist_ok=True)
    provenance = Provenance(options.examples_per_reason)
    quarantined: list[QuarantineEntry] = []
    steps = [(spec.name, build_step(spec.name, spec.kwargs)) for spec in pass_.steps]
    if pass_.apply is not None:
        cross = build_step(pass_.apply.name, pass_.apply.kwargs)
        applier = cross.applier(combined_path(run_dir, pass_.apply.name), task.id)
        steps.insert(0, (pass_.apply.name, _CrossShardApplier(applier)))
    if pass_.index == 0:
        records = read_input(task, options, provenance, quarantined)
    else:
        records = (Record.from_json(o) for o in read_jsonl_zst(kept_path(run_dir, pass_.index - 1, task.id)))
    removed: list[dict] = []
    kept: list[Record] = []
    for record in records:
        reason = run_steps(steps, record, provenance)
        if reason is None:
            kept.append(record)
            continue
        step, why = reason
        provenance.record_removed(record.id, record.text, record.lang, why)
        removed.append({"id": record.id, "source": record.source, "lang": record.lang, "step": step,
                        "reason": why, "chars": len(record.text), "text": record.text[: options.removed_text_chars]})
    if pass_.collect is None:
        for record in kept:
            provenance.record_output(record.text, record.lang)
    else:
        collector = build_step(pass_.collect.name, pass_.collect.kwargs)
        collector.write_signatures(task.id, [r.id for r in kept], [r.text for r in kept], [r.lang for r in kept],
                                   signature_path(run_dir, pass_.index, task.id, pass_.collect.name))
    write_jsonl_zst(kept_path(run_dir, pass_.index, task.id), (r.to_json() for r in kept))
    write_jsonl_zst(run_dir / "removed" / f"{task.id}.p{pass_.index}.jsonl.zst", removed)
    if pass_.index == 0:
        (run_dir / "quarantine").mkdir(exist_ok=True)
        write_quarantine(quarantined, run_dir / "quarantine" / f"{task.id}.jsonl")
    write_json_atomic(provenance.to_json(), marker)
    return task.id


class _CrossShardApplier:
    """Marks a cross-shard step's applier among the per-document steps: it is called with
    (doc id, text, lang) and answers like a filter or a modifier."""

    def __init__(self, applier: Any):
        self.applier = applier


def read_input(task: Task, options: TaskOptions, provenance: Provenance,
                quarantined: list[QuarantineEntry]) -> Iterator[Record]:
    """The task's records, with bad input, empty and enormous documents diverted to quarantine."""
    src = options.sources[task.source]
    if task.format == "hf":
        items = read_hf(task.source, task.files[0], split=src["hf_split"], text_field=src["text_field"],
                        limit=src["limit"])
    else:
        items = (item for f in task.files
                 for item in read_records(task.source, Path(task.root), Path(f), task.format,
                                          text_field=src["text_field"], csv_column=src["csv_column"],
                                          start=task.start, stop=task.stop, max_bytes=4 * options.max_doc_chars,
                                          doc_separator=src["doc_separator"]))
    for item in items:
        provenance.record_read()
        if isinstance(item, Record):
            item = _size_check(item, options.max_doc_chars)
        if isinstance(item, QuarantineEntry):
            quarantined.append(item)
            provenance.record_quarantine(item.reason.split(" (")[0].split(":")[0])
            continue
        provenance.record_input(item.text)
        yield item


def _size_check(record: Record, max_chars: int) -> Record | QuarantineEntry:
    file, _, line = record.id[len(record.source) + 1:].rpartition(":")
    if not record.text.strip():
        return QuarantineEntry(record.source, file, int(line), "empty document", record.text[:200])
    if len(record.text) > max_chars:
        return QuarantineEntry(record.source, file, int(line),
                               f"enormous document ({len(record.text)} characters > input.max_doc_chars={max_chars})",
                               record.text[:200])
    return record


def run_steps(steps: list[tuple[str, Any]], record: Record, provenance: Provenance) -> tuple[str, str] | None:
    """Run the steps on `record` in place; (step, reason) of the step that dropped it, else None."""
    for name, step in steps:
        chars_in = len(record.text)
        if isinstance(step, _CrossShardApplier):
            result = step.applier(record.id, record.text, record.lang)
        elif name == LANGID:
            lang, score = step(record.text)
            record.lang = lang
            record.meta["lang_score"] = float(score)
            result = None
        elif name == LANGUAGE and "lang_score" in record.meta:  # langid ran: reuse its answer
            result = step.check(record.lang, record.meta["lang_score"])
        elif hasattr(step, "judge"):  # a classifier: keep its score for the report and later steps
            score, result = step.judge(record.text, record.lang)
            record.meta.setdefault("scores", {})[name] = score
            if score is not None:
                provenance.record_score(name, score, dropped=result is not None)
        elif hasattr(step, "check_scores"):  # filters on a score an earlier step stored
            result = step.check_scores(record.meta.get("scores", {}))
        else:
            result = step(record.text, record.lang)
        if isinstance(result, str):
            provenance.record_step(name, chars_in, None, reason=result)
            return name, result
        if isinstance(result, tuple) and len(result) == 2:
            text, counts = result
            if not text.strip():
                provenance.record_step(name, chars_in, None, reason=f"{name}.empty")
                return name, f"{name}.empty"
            changes = {k: int(n) for k, n in counts.items()} if counts else None
            if changes is None and text != record.text:
                changes = {"unspecified": 1}  # the step changed the text without saying how
            if changes is not None:
                record.meta.setdefault("changes", {})[name] = changes
                record.text = text
            provenance.record_step(name, chars_in, len(text), changes=changes)
        elif result is None:
            provenance.record_step(name, chars_in, chars_in)
        else:
            raise DataError(f"step {name!r} returned {type(result).__name__} for document {record.id}; a filter "
                            "returns None or a reason string, a modifier (text, counts)")
    return None


def read_marker(run_dir: Path, pass_index: int, task_id: str) -> Provenance:
    """The provenance counters a finished task left in its done-marker."""
    return Provenance.from_json(json.loads(done_marker(run_dir, pass_index, task_id).read_text("utf-8")))

