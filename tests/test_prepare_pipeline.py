"""The prepare pipeline on synthetic data: provenance, quarantine, cross-shard dedup,
workers, and a killed-then-rerun job giving the same bytes as an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lm.data.prepare.executor import prepare
from lm.data.prepare.output import iter_clean, read_jsonl_zst
from lm.data.prepare.quarantine import read_quarantine
from lm.data.prepare.recipe import validate_recipe
from lm.data.read import DataError
from lm.data.shards import TokenShards

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the river runs past old mills and green fields where farmers grow wheat barley oats".split()


class DropWord:
    """Test filter: drops documents containing `word`."""

    name = "drop_word"

    def __init__(self, word: str = "spam"):
        self.word = word

    def __call__(self, text, lang):
        return f"drop_word.{self.word}" if self.word in text.split() else None


class MaskDigits:
    """Test modifier: replaces every digit with '#', counting them."""

    name = "mask_digits"

    def __call__(self, text, lang):
        n = sum(c.isdigit() for c in text)
        return ("".join("#" if c.isdigit() else c for c in text), {"digit": n}) if n else (text, {})


class SlowKeep:
    """Test filter that keeps everything slowly, so a job can be killed part way."""

    name = "slow"

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds

    def __call__(self, text, lang):
        time.sleep(self.seconds)
        return None


class BadReturn:
    name = "bad_return"

    def __call__(self, text, lang):
        return 42


def sentence(i: int, n: int = 12) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" number {i}."


def write_corpus(root: Path, num_files: int = 3, docs_per_file: int = 10) -> Path:
    """jsonl files with: plain docs, one 'spam' doc per file, a duplicate of file 0's first doc
    in every later file, and one malformed line per file."""
    root.mkdir(parents=True, exist_ok=True)
    for f in range(num_files):
        docs = [sentence(f * 100 + i) for i in range(docs_per_file)]
        docs[3] = "buy spam now " + docs[3]
        if f > 0:
            docs[5] = sentence(0)
        lines = [json.dumps({"text": d}) for d in docs] + ['{"text": broken']
        (root / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def recipe_dict(data: Path, *, slow: float = 0.0, tokenizer=None, steps=None, docs_per_task=4) -> dict:
    return {
        "sources": [{"name": "web", "path": str(data)}],
        "steps": steps if steps is not None else [
            {"step": "tests.test_prepare_pipeline:SlowKeep", "seconds": slow},
            {"step": "tests.test_prepare_pipeline:DropWord", "word": "spam"},
            {"step": "tests.test_prepare_pipeline:MaskDigits"},
            {"step": "exact_dedup"},
        ],
        "execution": {"docs_per_task": docs_per_task},
        "output": {"docs_per_shard": 7},
        "tokenizer": tokenizer,
    }


def run(tmp_path: Path, raw: dict, out: str = "out", **kwargs) -> tuple[Path, dict]:
    recipe = validate_recipe(raw, base_dir=tmp_path)
    out_dir = tmp_path / out
    return out_dir, prepare(recipe, out_dir, progress=False, **kwargs)


def test_counts_add_up_and_every_drop_and_change_is_recorded(tmp_path):
    data = write_corpus(tmp_path / "data")
    out, rep = run(tmp_path, recipe_dict(data))

    d = rep["documents"]
    assert d == {"read": 33, "quarantined": 3, "entered_steps": 30, "dropped": 5, "clean": 25}
    steps = {row["step"]: row for row in rep["steps"]}
    assert steps["tests.test_prepare_pipeline:DropWord"]["dropped"] == {"drop_word.spam": 3}
    assert steps["exact_dedup"]["dropped"] == {"exact_dedup.duplicate": 2}
    masks = steps["tests.test_prepare_pipeline:MaskDigits"]
    assert masks["modified_docs"] == 27 and masks["changes"]["digit"] == sum(
        len(str(f * 100 + i)) for f in range(3) for i in range(10) if i != 3 and not (f > 0 and i == 5)) + 2
    clean = list(iter_clean(out / "clean"))
    assert len(clean) == 25 and not any(c.isdigit() for r in clean for c in r.text)
    assert clean[0].id == "web/part-0.jsonl:1" and clean[0].meta["changes"] == {
        "tests.test_prepare_pipeline:MaskDigits": {"digit": 1}}
    removed = [o for p in sorted((out / "removed").glob("*.zst")) for o in read_jsonl_zst(p)]
    assert sorted((o["id"], o["reason"]) for o in removed) == [
        ("web/part-0.jsonl:4", "drop_word.spam"), ("web/part-1.jsonl:4", "drop_word.spam"),
        ("web/part-1.jsonl:6", "exact_dedup.duplicate"), ("web/part-2.jsonl:4", "drop_word.spam"),
        ("web/part-2.jsonl:6", "exact_dedup.duplicate")]
    quarantine = read_quarantine(out / "quarantine.jsonl")
    assert [(q.file, q.line, q.reason.split(" (")[0]) for q in quarantine] == [
        (f"part-{f}.jsonl", 11, "malformed JSON") for f in range(3)]
    assert json.loads((out / "clean" / "manifest.json").read_text())["num_docs"] == 25
    assert [s["num_docs"] for s in json.loads((out / "clean" / "manifest.json").read_text())["shards"]] == [7, 7, 7, 4]
    assert "| exact_dedup | 27 | 25 | 2 |" in (out / "report.md").read_text()
    assert (out / "plots" / "length.png").stat().st_size > 0


def test_dedup_works_across_tasks_and_keeps_the_first(tmp_path):
    data = write_corpus(tmp_path / "data")
    out, _ = run(tmp_path, recipe_dict(data, docs_per_task=100))  # one task per file
    ids = [r.id for r in iter_clean(out / "clean")]
    assert "web/part-0.jsonl:1" in ids and "web/part-1.jsonl:6" not in ids and "web/part-2.jsonl:6" not in ids


def test_two_workers_give_the_same_bytes_as_one(tmp_path):
    data = write_corpus(tmp_path / "data")
    one, _ = run(tmp_path, recipe_dict(data), "one")
    two, _ = run(tmp_path, recipe_dict(data), "two", workers=2)
    assert output_bytes(one) == output_bytes(two)


def test_a_step_returning_nonsense_is_an_error_naming_it(tmp_path):
    data = write_corpus(tmp_path / "data", num_files=1)
    with pytest.raises(DataError, match=r"step 'tests.test_prepare_pipeline:BadReturn' returned int for "
                                        r"document web/part-0.jsonl:1"):
        run(tmp_path, recipe_dict(data, steps=[{"step": "tests.test_prepare_pipeline:BadReturn"}]))


def test_a_rerun_with_another_recipe_is_refused(tmp_path):
    data = write_corpus(tmp_path / "data", num_files=1)
    run(tmp_path, recipe_dict(data))
    with pytest.raises(DataError, match="prepared with a different recipe"):
        run(tmp_path, recipe_dict(data, docs_per_task=5))


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every final output file (not the per-task work files), by relative path."""
    files = {}
    for sub in ("clean", "removed", "tokens", "tokenizer"):
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                files[p.relative_to(out).as_posix()] = p.read_bytes()
    for name in ("quarantine.jsonl", "report.json", "report.md"):
        files[name] = (out / name).read_bytes()
    return files


def test_killed_and_rerun_job_gives_the_same_bytes(tmp_path):
    data = write_corpus(tmp_path / "data", num_files=3, docs_per_file=10)
    tokenizer = {"vocab_size": 300}
    reference, _ = run(tmp_path, recipe_dict(data, tokenizer=tokenizer), "reference")
    recipe_file = tmp_path / "recipe.py"
    recipe_file.write_text(f"def get_recipe():\n    return {recipe_dict(data, slow=0.05, tokenizer=tokenizer)!r}\n")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lm.cli", "data", "prepare", "--config", str(recipe_file), "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = out / "tasks" / "pass-0"
    deadline = time.monotonic() + 60
    while len(list(markers.glob("*.json"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(markers.glob("*.json")))
    num_tasks = len(json.loads((out / "tasks" / "plan.json").read_text()))
    assert 3 <= done_at_kill < num_tasks, "the job was not killed part way"
    assert not (out / "report.json").exists()

    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    # The recipes differ only in the sleeping step's argument, which no output records.
    assert output_bytes(out) == output_bytes(reference)
    assert TokenShards(out / "tokens" / "web").num_docs + TokenShards(out / "heldout" / "web").num_docs == 25


def test_line_dedup_removes_lines_repeated_across_tasks(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in range(3):
        docs = [f"{sentence(f * 10 + i)}\nShare this page on social media\n{sentence(f * 10 + i + 5)}" for i in range(2)]
        (data / f"{f}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out, rep = run(tmp_path, recipe_dict(data, steps=[{"step": "line_dedup", "max_occurrences": 5}], docs_per_task=2))
    clean = list(iter_clean(out / "clean"))
    assert len(clean) == 6 and all("Share this page" not in r.text for r in clean)
    assert all(r.meta["changes"] == {"line_dedup": {"line": 1}} for r in clean)
    assert rep["steps"][0]["changes"] == {"line": 6}


def test_when_every_document_is_dropped_the_report_still_says_why(tmp_path):
    data = write_corpus(tmp_path / "data", num_files=1)
    raw = recipe_dict(data, tokenizer={"vocab_size": 300},
                      steps=[{"step": "tests.test_prepare_pipeline:DropWord", "word": "number"}])
    with pytest.raises(DataError, match="no document survived the steps"):
        run(tmp_path, raw)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["documents"]["clean"] == 0 and rep["top_removal_reasons"] == [
        {"step": "tests.test_prepare_pipeline:DropWord", "reason": "drop_word.number", "docs": 10}]
