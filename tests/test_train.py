"""End to end: a short run learns, resumes bit for bit after SIGKILL, stops on divergence,
samples, and the CLI names bad config fields."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lm.config import load_config
from lm.train.loop import TrainingDiverged, train
from lm.train.metrics import read_metrics
from lm.errors import PREEMPTED_EXIT
from tests.helpers import write_small_stdlib_corpus

TINY = "experiments/configs/tiny.py"


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """About 400 KB of real text: small standard-library modules, as .py files."""
    return write_small_stdlib_corpus(tmp_path_factory.mktemp("corpus"))


def overrides(corpus: Path, **train) -> list[str]:
    args = [f"--config.data.sources=['{corpus}']", "--config.train.warmup_steps=10",
            "--config.train.eval_batches=1", "--config.data.heldout_fraction=0.1"]
    return args + [f"--config.train.{k}={v}" for k, v in train.items()]


@pytest.fixture(scope="session")
def trained_run(corpus_dir, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    cfg = load_config(TINY, overrides(corpus_dir, steps=150, eval_every=75, checkpoint_every=75))
    train(cfg, workdir)
    return workdir


def test_a_short_run_learns(trained_run):
    rows = read_metrics(trained_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 151))
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-10:]) / 10
    assert 5.5 < first < 7.0  # about ln(512) at initialisation
    assert last < first - 1.5
    evals = read_metrics(trained_run / "metrics.jsonl", kind="eval")
    assert [r["step"] for r in evals] == [75, 150] and evals[1]["loss"] < evals[0]["loss"]
    for key in ("tokens_per_s", "mfu", "grad_norm", "lr", "perplexity", "step_time"):
        assert rows[-1][key] > 0
    assert (trained_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir() if p.name.isdigit()) == ["150", "75"]
    corpus = json.loads((trained_run / "corpus.json").read_text())
    assert corpus["num_docs"] > 10 and len(corpus["sha256"]) == 64


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lm.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_sample_from_the_trained_run(trained_run):
    result = run_cli("sample", "--workdir", str(trained_run), "--prompt", "def ",
                     "--max-new-tokens", "20", "--num-samples", "2")
    assert result.returncode == 0, result.stderr
    samples = result.stdout.split("--- sample (step 150) ---\n")[1:]
    assert len(samples) == 2 and all(s.startswith("def ") for s in samples)
    greedy = [run_cli("sample", "--workdir", str(trained_run), "--prompt", "import",
                      "--temperature", "0", "--max-new-tokens", "12").stdout for _ in range(2)]
    assert greedy[0] == greedy[1]


RESUME_ARGS = dict(steps=30, eval_every=10, checkpoint_every=5)


@pytest.fixture(scope="module")
def straight_run(corpus_dir, tmp_path_factory) -> Path:
    """An uninterrupted 30-step run, the reference for the interrupted ones."""
    straight = tmp_path_factory.mktemp("straight")
    args = overrides(corpus_dir, **RESUME_ARGS)
    assert run_cli("train", "--config", TINY, "--workdir", str(straight), *args).returncode == 0
    return straight


def losses(workdir: Path, kind: str = "train") -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(workdir / "metrics.jsonl", kind=kind)]


def start_and_signal(workdir: Path, args: list[str], after_steps: int, sig: int) -> subprocess.Popen:
    """Start `lm train` and send it `sig` once it has logged `after_steps` train steps."""
    process = subprocess.Popen([sys.executable, "-m", "lm.cli", "train", "--config", TINY,
                                "--workdir", str(workdir), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(read_metrics(metrics)) >= after_steps:
            os.kill(process.pid, sig)
            break
        time.sleep(0.02)
    return process


def test_kill_and_resume_gives_the_same_losses_bit_for_bit(corpus_dir, straight_run, tmp_path):
    args = overrides(corpus_dir, **RESUME_ARGS)
    kill_after = random.Random().randint(7, 24)
    killed = tmp_path / "killed"
    process = start_and_signal(killed, args, kill_after, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, f"run ended before step {kill_after}"
    resumed = run_cli("train", "--config", TINY, "--workdir", str(killed), *args)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed) == losses(straight_run), f"killed after step {kill_after}"
    assert losses(killed, "eval") == losses(straight_run, "eval")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_in_flight_and_the_rerun_continues_bit_for_bit(
        corpus_dir, straight_run, tmp_path, sig):
    args = overrides(corpus_dir, **RESUME_ARGS)
    stop_after = random.Random().randint(2, 26)
    stopped = tmp_path / "stopped"
    process = start_and_signal(stopped, args, stop_after, sig)
    signalled = time.time()
    _, stderr = process.communicate(timeout=120)
    assert time.time() - signalled < 20, "the run took too long to stop"
    assert process.returncode == PREEMPTED_EXIT, f"after step {stop_after}: {stderr[-2000:]}"
    step = losses(stopped)[-1][0]
    assert step >= stop_after
    checkpoint = stopped / "checkpoints" / str(step)
    name = signal.Signals(sig).name
    assert stderr.splitlines()[-1] == (
        f"lm train: stopped by {name} after step {step}; its checkpoint is in {checkpoint}; rerun the "
        f"same command to resume from step {step + 1}")
    assert "Traceback" not in stderr
    assert checkpoint.is_dir()

    resumed = run_cli("train", "--config", TINY, "--workdir", str(stopped), *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"[train] resumed from step {step} in {stopped / 'checkpoints'}" in resumed.stdout
    assert losses(stopped) == losses(straight_run), f"stopped after step {step}"
    assert losses(stopped, "eval") == losses(straight_run, "eval")


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(corpus_dir, tmp_path):
    cfg = load_config(TINY, overrides(corpus_dir, steps=20, lr=1e30, warmup_steps=0,
                                      max_bad_steps=3, checkpoint_every=1, eval_every=20))
    with pytest.raises(TrainingDiverged, match="3 steps in a row .* non-finite .* last good checkpoint"):
        train(cfg, tmp_path)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[-1]["skipped_steps"] == 3 and len(rows) == 4
    assert rows[0]["loss"] == rows[0]["loss"]  # the first step was finite
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1]  # no checkpoint is written during a run of bad steps


def test_cli_bad_config_is_one_line_naming_the_field(tmp_path):
    result = run_cli("train", "--config", TINY, "--workdir", str(tmp_path),
                     "--config.model.num_heads=5")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "'model.num_heads'" in result.stderr and "do not divide d_model" in result.stderr
    assert not (tmp_path / "config.json").exists()


def test_a_run_saved_before_a_field_existed_resumes_with_its_default(tmp_path):
    from lm.config import ConfigError, default_config, to_json_dict
    from lm.train.loop import check_workdir_config
    saved = to_json_dict(default_config())
    del saved["data"]["unique_tokens"]  # a field added after this run started
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_workdir_config(default_config(), tmp_path, write=False)
    changed = default_config()
    changed.data.unique_tokens = 1000
    with pytest.raises(ConfigError, match="'data.unique_tokens' is 1000 but the run in .* was started "
                                          "with 0"):
        check_workdir_config(changed, tmp_path, write=False)


def test_resuming_with_a_changed_model_is_refused(trained_run):
    cfg = load_config(TINY, ["--config.model.d_model=32"])
    from lm.config import ConfigError
    with pytest.raises(ConfigError, match="'model.d_model' is 32 but the run"):
        train(cfg, trained_run)


def test_quickstart_trains_plots_and_samples(corpus_dir, tmp_path):
    """The quickstart's wiring, on the small corpus instead of the whole standard library."""
    result = run_cli("quickstart", "--workdir", str(tmp_path), f"--config.data.sources=['{corpus_dir}']",
                     "--config.model.vocab_size=512", "--config.train.steps=4",
                     "--config.train.warmup_steps=1", "--config.data.heldout_fraction=0.1")
    assert result.returncode == 0, result.stderr
    assert f"loss plot: {tmp_path / 'loss.png'}" in result.stdout
    assert "--- sample (step 4) ---\ndef " in result.stdout
    assert (tmp_path / "loss.png").exists()
