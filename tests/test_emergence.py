"""`lm sweep eval` on a tiny sweep (two model sizes, two kept checkpoints each, real
training): the tidy task table and its numbers, resuming, the join into the results, the
plot, bad input; where a metric jumps; and notebooks/emergence.ipynb run against it."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.data.corpus import stdlib_corpus
from lm.sweep.results import read_results
from lm.sweep.runner import RUNS_DIR, prepare, statuses
from lm.sweep.task_table import TASK_COLUMNS, read_task_results
from lm.sweep.task_plots import largest_jumps
from lm.tasks.run import evaluate_tasks
from lm.tasks.schema import TASKS_DIR
from lm.train.loop import train
from lm.train.metrics import read_metrics
from lm.train.state import read_run_config
from tests.helpers import lm_sweep

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "emergence.ipynb"
RUNS = ["d16-L1", "d32-L1"]
STEPS = [12, 24]
TINY_SWEEP = """
def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 64, "tie_embeddings": True},
            "data": {"seq_len": 64},
            "train": {"batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_every": 12,
                      "eval_batches": 1, "checkpoint_every": 12, "keep_every": 12, "keep_last": 1},
        },
        "kind": "n",
        "n_kind": "non_embedding",
        "model_sizes": [3.4e3, 12e3],
        "tokens": 24 * 8 * 64,
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
"""
MC_METRICS = ["acc", "acc_norm", "acc_bytes", "logprob", "brier"]
GEN_METRICS = ["logprob", "exact_match", "edit_distance"]



@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """A trained tiny sweep, evaluated on indentation and brackets (4 examples each);
    (its directory, what `lm sweep eval` printed). The runs train in this process, as
    `lm sweep run`'s subprocesses would (tests/test_sweep_runner.py runs those), which
    saves starting a Python and JAX for each."""
    root = tmp_path_factory.mktemp("emergence")
    corpus, size = root / "corpus", 0
    for doc in stdlib_corpus()[0]:
        if size > 60_000:
            break
        if len(doc.text) < 12_000:
            (corpus / doc.id).parent.mkdir(parents=True, exist_ok=True)
            (corpus / doc.id).write_text(doc.text)
            size += len(doc.text)
    (root / "tiny.py").write_text(TINY_SWEEP)
    workdir = root / "sweep"
    specs = prepare(root / "tiny.py", workdir, [f"--config.data.sources=['{corpus}']",
                                                "--config.data.heldout_fraction=0.1"])
    for spec in specs:
        with contextlib.redirect_stdout(io.StringIO()):
            train(spec.config(), workdir / RUNS_DIR / spec.name)
    assert [s.status for s in statuses(workdir)] == ["done", "done"]
    code, out = lm_sweep("eval", "--workdir", str(workdir), "--task", "indentation", "--task", "brackets",
                         "--limit", "4", "--plot", str(root / "tasks.png"))
    assert code == 0
    return workdir, out


def test_the_table_has_a_row_per_run_checkpoint_task_and_metric(sweep):
    workdir, out = sweep
    assert (workdir / "task_results.csv").read_text().splitlines()[0] == ",".join(TASK_COLUMNS)
    rows = read_task_results(workdir / "task_results.csv")
    keys = [(r["run"], r["step"], r["task"], r["metric"]) for r in rows]
    assert keys == [(run, step, task, metric) for run in RUNS for step in STEPS
                    for task, metrics in (("indentation", MC_METRICS), ("brackets", GEN_METRICS))
                    for metric in metrics]
    assert re.findall(r"^\[sweep eval\] (\d/4 \S+ step \d+):", out, re.M) == [
        "1/4 d16-L1 step 12", "2/4 d16-L1 step 24", "3/4 d32-L1 step 12", "4/4 d32-L1 step 24"]
    assert f"[sweep eval] 32 rows: {workdir / 'task_results.csv'}" in out
    for r in rows:
        cfg = read_run_config(workdir / "runs" / r["run"])
        assert r["tokens"] == r["step"] * 8 * 64
        assert r["flops_6n_non_embedding"] == 6.0 * r["n_non_embedding"] * r["tokens"]
        assert r["flops_exact"] > r["flops_6n_total"] > r["flops_6n_non_embedding"]
        evals = {e["step"]: e["loss"] for e in read_metrics(workdir / "runs" / r["run"] / "metrics.jsonl",
                                                             kind="eval")}
        assert r["heldout_loss"] == evals[r["step"]] and 3.0 < r["heldout_loss"] < 6.5
        assert (r["num_fewshot"], r["limit"], r["examples"]) == ((1 if r["task"] == "indentation" else 2), 4, 4)
        assert r["kind"] == ("multiple_choice" if r["task"] == "indentation" else "generate")
        assert cfg.model.vocab_size == 512 and r["stderr"] >= 0
        value = r["value"]
        if r["metric"] in ("acc", "acc_norm", "acc_bytes", "exact_match"):
            assert value in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 examples
        elif r["metric"] == "logprob":
            assert -200 < value < 0
        elif r["metric"] == "brier":
            assert 0 <= value <= 2
        else:
            assert value >= 0
    # The checkpoints differ: so do their scores.
    logprobs = {(r["run"], r["step"]): r["value"] for r in rows
                if r["task"] == "brackets" and r["metric"] == "logprob"}
    assert len(set(logprobs.values())) == 4


def test_final_scores_equal_lm_eval_on_the_newest_checkpoint(sweep):
    workdir, _ = sweep
    run = workdir / "runs" / "d32-L1"
    expected = evaluate_tasks(run, read_run_config(run), ["brackets"], num_fewshot=None, limit=4,
                              batch_size=8)
    assert expected["step"] == 24
    rows = {r["metric"]: r["value"] for r in read_task_results(workdir / "task_results.csv")
            if (r["run"], r["step"], r["task"]) == ("d32-L1", 24, "brackets")}
    for metric in GEN_METRICS:
        assert rows[metric] == pytest.approx(expected["tasks"]["brackets"][metric], abs=1e-5)


def test_final_steps_are_joined_to_the_results(sweep):
    workdir, _ = sweep
    header = (workdir / "results_tasks.csv").read_text().splitlines()[0].split(",")
    results_header = (workdir / "results.csv").read_text().splitlines()[0].split(",")
    assert header == results_header + [f"task.indentation.{m}" for m in MC_METRICS] + [
        f"task.brackets.{m}" for m in ("logprob", "exact_match", "edit_distance")]
    final = {(r["run"], f"task.{r['task']}.{r['metric']}"): r["value"]
             for r in read_task_results(workdir / "task_results.csv") if r["step"] == 24}
    import csv
    with open(workdir / "results_tasks.csv", newline="") as f:
        joined = list(csv.DictReader(f))
    assert [row["run"] for row in joined] == RUNS
    for row in joined:
        for column in header[len(results_header):]:
            assert float(row[column]) == final[row["run"], column]
    assert [r["status"] for r in read_results(workdir / "results.csv")] == ["done", "done"]
    code, out = lm_sweep("status", "--workdir", str(workdir))  # results.csv untouched by the join
    assert code == 0 and out.splitlines()[0].split()[:2] == ["d16-L1", "done"]


def test_a_rerun_adds_nothing_and_the_plot_is_a_png(sweep):
    workdir, _ = sweep
    before = (workdir / "task_results.csv").read_bytes()
    code, out = lm_sweep("eval", "--workdir", str(workdir), "--task", "indentation", "brackets",
                         "--limit", "4", "--checkpoints", "final")
    assert code == 0
    assert re.findall(r"^\[sweep eval\] (.*)$", out, re.M)[:2] == [
        "1/2 d16-L1 step 24: already evaluated", "2/2 d32-L1 step 24: already evaluated"]
    assert (workdir / "task_results.csv").read_bytes() == before
    assert (workdir.parent / "tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_named(sweep, tmp_path):
    workdir, _ = sweep
    known = ", ".join(sorted(p.stem for p in TASKS_DIR.glob("*.yaml")))
    with pytest.raises(ConfigError) as err:
        lm_sweep("eval", "--workdir", str(workdir), "--task", "nope")
    assert str(err.value) == f"task 'nope' is neither a file nor a task in {TASKS_DIR} (known: {known})"
    with pytest.raises(ConfigError) as err:
        lm_sweep("eval", "--workdir", str(workdir), "--task", "brackets", "--limit", "5")
    assert str(err.value) == (f"{workdir / 'task_results.csv'} holds task brackets with --num-fewshot 2 "
                              "--limit 4, not --num-fewshot 2 --limit 5; use those, or delete its rows "
                              "(or the file)")
    with pytest.raises(ConfigError) as err:
        lm_sweep("eval", "--workdir", str(workdir), "--task", "brackets", "--limit", "0")
    assert str(err.value) == "--num-fewshot must be >= 0 and --limit positive"
    fresh = tmp_path / "fresh"  # the same plan, nothing trained
    fresh.mkdir()
    (fresh / "sweep.json").write_text((workdir / "sweep.json").read_text())
    with pytest.raises(ConfigError) as err:
        lm_sweep("eval", "--workdir", str(fresh), "--task", "brackets")
    assert str(err.value) == (f"no finished runs to evaluate in {fresh} (2 runs: 0 done, 0 started, "
                              "0 failed, 2 pending); run `lm sweep run` first")
    assert [s.status for s in statuses(fresh)] == ["pending", "pending"]
    with pytest.raises(FileNotFoundError, match="is .* a sweep directory"):
        lm_sweep("eval", "--workdir", str(tmp_path / "absent"), "--task", "brackets")


def row(run: str, step: int, metric: str, value: float, stderr: float = 0.05) -> dict:
    return {"run": run, "step": step, "task": "t", "metric": metric, "value": value, "stderr": stderr}


def test_largest_jumps_finds_a_lasting_sudden_rise_beside_a_smooth_one():
    acc = [0.0, 0.02, 0.05, 0.7, 0.75]  # one interval holds most of the rise
    rows = [row("big", 100 * (i + 1), "acc", v) for i, v in enumerate(acc)]
    rows += [row("big", 100 * (i + 1), "brier", 0.9 - 0.1 * i) for i in range(5)]  # a straight line
    jump, = largest_jumps(rows)
    assert jump.is_jump and (jump.from_step, jump.to_step) == (300, 400)
    assert jump.rise == pytest.approx(0.65) and jump.share == pytest.approx(0.65 / 0.75)
    assert jump.continuous_share == pytest.approx(0.25)
    assert jump.text() == ("t: a jump; acc rose most lastingly in big from step 300 to 400, 0.050 -> 0.700, "
                           "by 0.650 for good (87% of its range over the sweep; stderr 0.071), while brier "
                           "went 0.700 -> 0.600 (25% of its range)")
    smooth = [r if r["metric"] != "acc" else {**r, "value": 0.15 * r["step"] / 100} for r in rows]
    jump, = largest_jumps(smooth)
    assert not jump.is_jump and jump.share == pytest.approx(0.25)
    # A rise that falls back (noise) is not lasting: 0.25 -> 0.55 -> 0.40 rises 0.09 for good.
    noisy = [r if r["metric"] != "acc" else {**r, "value": [0.3, 0.25, 0.55, 0.4, 0.53][r["step"] // 100 - 1]}
             for r in rows]
    jump, = largest_jumps(noisy)
    assert (jump.from_step, jump.to_step) == (200, 300) and jump.rise == pytest.approx(0.10)
    assert not jump.is_jump
    with pytest.raises(ValueError, match=r"^task t has no acc and brier or exact_match and logprob rows "
                       r"\(it has acc\)$"):
        largest_jumps([r for r in rows if r["metric"] == "acc"])
    flat = [r if r["metric"] != "acc" else {**r, "value": 0.0} for r in rows]
    assert largest_jumps(flat)[0].text() == ("t: no jump; acc never rose for good from one kept checkpoint "
                                             "to the next (all values in [0.000, 0.000])")


def test_committed_notebook_is_clean():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert code[0].metadata.get("tags") == ["parameters"]


def test_the_notebook_runs_on_the_tiny_sweep(sweep, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    workdir, _ = sweep
    monkeypatch.setenv("LM_SWEEP_DIR", str(workdir))
    monkeypatch.delenv("LM_COMPUTE", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert f"{workdir / 'task_results.csv'}: 32 rows, 2 runs, 4 checkpoints, tasks indentation, brackets" in text
    assert "  indentation: multiple_choice, 1 shots, 4 examples (limit 4), metrics acc / brier" in text
    assert "  brackets: generate, 2 shots, 4 examples (limit 4), metrics exact_match / logprob" in text
    expected = [j.text() for j in largest_jumps(read_task_results(workdir / "task_results.csv"))]
    assert len(expected) == 2 and all(line in text.splitlines() for line in expected)
    assert re.search(r"^jumps: .* \(\d of 2 tasks\)$", text, re.M)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    assert json.dumps(text).count("d32-L1") >= 2
