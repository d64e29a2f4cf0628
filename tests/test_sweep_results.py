"""results.csv and curves.csv from runs' metrics: exact columns, the formulas for tokens,
FLOPs and final losses, empty cells for runs not done, and typed reading."""

from pathlib import Path

import pytest

from lm.scaling.counts import train_flops_per_token
from lm.sweep.grid import expand, load_sweep
from lm.sweep.results import (CURVE_COLUMNS, RESULT_COLUMNS, final_train_loss, read_results,
                              write_results)
from lm.train.metrics import MetricsLogger

TINY_CI = Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "tiny_ci.py"


def log_run(run_dir: Path, losses: list[float], evals: dict[int, float]) -> None:
    logger = MetricsLogger(run_dir, total_steps=len(losses), tensorboard=False)
    for step, loss in enumerate(losses, start=1):
        logger.log(step, {"loss": loss})
        if step in evals:
            logger.log(step, {"loss": evals[step]}, kind="eval")
    logger.close()


def test_final_train_loss_averages_the_last_tenth():
    assert final_train_loss([5.0, 4.0, 3.0]) == 3.0
    assert final_train_loss([float(x) for x in range(20)]) == 18.5
    assert final_train_loss([float(x) for x in range(25)]) == 23.5  # the last 2 of 25


@pytest.fixture
def written(tmp_path):
    specs = expand(load_sweep(TINY_CI))  # C6e8-d32-L1 trains 17 steps, C6e8-d32-L2 9
    done, started = specs[0], specs[1]
    losses = [6.0 - 0.1 * i for i in range(17)]
    log_run(tmp_path / "runs" / done.name, losses, {10: 5.5, 17: 4.5})
    log_run(tmp_path / "runs" / started.name, [6.0, 5.9], {})
    runs = [(done, "done", tmp_path / "runs" / done.name),
            (started, "started", tmp_path / "runs" / started.name)]
    results, curves = write_results(tmp_path, "isoflop", runs)
    return specs, losses, results, curves


def test_results_csv(written):
    specs, losses, results, _ = written
    assert results.read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    done, started = read_results(results)
    spec = specs[0]
    tokens = 17 * 8 * 64
    assert done == {
        "run": "C6e8-d32-L1", "status": "done", "kind": "isoflop", "budget": 6e8, "d_model": 32,
        "num_layers": 1, "num_heads": 2, "num_kv_heads": 2, "d_ff": 80, "vocab_size": 512,
        "seq_len": 64, "batch_size": 8, "steps": 17, "n_total": spec.n_total,
        "n_non_embedding": spec.n_non_embedding, "tokens": tokens,
        "flops_6n_total": 6.0 * spec.n_total * tokens,
        "flops_6n_non_embedding": 6.0 * spec.n_non_embedding * tokens,
        "flops_exact": train_flops_per_token(spec.config().model, 64) * tokens,
        "final_train_loss": losses[-1], "heldout_loss": 4.5,
        "point": "C6e8-d32-L1", "best": 1, "hp.train.lr": 0.01, "hp.train.warmup_steps": 2}
    assert started["status"] == "started" and started["steps"] == 9
    assert started["final_train_loss"] is None and started["heldout_loss"] is None
    assert (started["point"], started["best"]) == ("C6e8-d32-L2", None)
    assert started["tokens"] == 9 * 8 * 64


def test_curves_csv(written):
    specs, losses, _, curves = written
    assert curves.read_text().splitlines()[0] == ",".join(CURVE_COLUMNS)
    rows = read_results(curves)
    assert [r["step"] for r in rows] == list(range(1, 18))  # only the done run
    assert {r["run"] for r in rows} == {"C6e8-d32-L1"}
    assert [r["train_loss"] for r in rows] == losses
    assert {r["step"]: r["heldout_loss"] for r in rows if r["heldout_loss"] is not None} == {10: 5.5, 17: 4.5}
    assert rows[9]["tokens"] == 10 * 512
    assert rows[9]["flops_6n_non_embedding"] == 6.0 * specs[0].n_non_embedding * 10 * 512


def test_a_non_sweep_csv_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"x.csv: header 'a,b' is neither results.csv's"):
        read_results(path)


def test_a_bad_value_names_the_line(written):
    _, _, _, curves = written
    lines = curves.read_text().splitlines()
    cells = lines[3].split(",")
    lines[3] = ",".join([cells[0], "four", *cells[2:]])
    curves.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"curves.csv:4: invalid literal for int"):
        read_results(curves)
