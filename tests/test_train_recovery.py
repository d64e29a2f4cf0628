"""Recovery in a real run: a planted bad batch is detected, logged, skipped or rolled back; a
corrupt newest checkpoint is passed over for the one before."""

import shutil
from pathlib import Path

import pytest

from lm.config import ConfigError, load_config
from lm.train.loop import train
from lm.train.metrics import read_metrics
from tests.helpers import write_small_stdlib_corpus

TINY = "experiments/configs/tiny.py"
SPIKE = 25  # the planted bad batch is the one step 25 trains on (stream position 24)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return write_small_stdlib_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(corpus_dir, tmp_path_factory) -> Path:
    """The tokenized corpus, built once and shared by the runs (data.prepared_dir)."""
    data_dir = tmp_path_factory.mktemp("data")
    train(config(corpus_dir, data_dir, steps=1, checkpoint_every=1), tmp_path_factory.mktemp("x"))
    return data_dir


def config(corpus: Path, data_dir: Path, **train_fields):
    fields = dict(steps=40, warmup_steps=5, eval_every=40, eval_batches=1, checkpoint_every=10,
                  spike_window=20, spike_min_history=10, batch_size=8)
    fields.update(train_fields)
    return load_config(TINY, [f"--config.data.sources=['{corpus}']", "--config.data.heldout_fraction=0.1",
                              f"--config.data.prepared_dir={data_dir}"]
                       + [f"--config.train.{k}={v}" for k, v in fields.items()])


def losses(workdir: Path) -> dict[int, float]:
    rows = read_metrics(workdir / "metrics.jsonl")
    assert len({r["step"] for r in rows}) == len(rows), "a step is logged twice"
    return {r["step"]: r["loss"] for r in rows}


def anomalies(workdir: Path) -> list[dict]:
    return read_metrics(workdir / "metrics.jsonl", kind="anomaly")


def test_a_clean_run_has_no_spikes(corpus_dir, prepared, tmp_path, capsys):
    summary = train(config(corpus_dir, prepared), tmp_path)
    assert anomalies(tmp_path) == [] and summary["anomalies"] == []
    assert "[train] no loss or gradient-norm spikes" in capsys.readouterr().out


def test_a_planted_bad_batch_is_logged_and_trained_on(corpus_dir, prepared, tmp_path, capsys):
    summary = train(config(corpus_dir, prepared, plant_bad_batch_at=SPIKE), tmp_path)
    events = anomalies(tmp_path)
    assert [(e["step"], e["action"]) for e in events] == [(SPIKE, "log")] * len(events)
    assert {e["metric"] for e in events} >= {"loss"}
    loss = next(e for e in events if e["metric"] == "loss")
    assert loss["value"] > loss["limit"] > loss["median"]
    assert loss["value"] == losses(tmp_path)[SPIKE]
    assert summary["anomalies"] == [{k: v for k, v in e.items() if k != "time"} for e in events]
    out = capsys.readouterr().out
    assert f"[train] {len(events)} loss or gradient-norm spike" in out
    assert f"step {SPIKE}: loss {loss['value']:.4g} over its limit {loss['limit']:.4g}" in out


def test_rollback_equals_a_run_that_skipped_the_same_batches(corpus_dir, prepared, tmp_path):
    rolled = tmp_path / "rolled"
    train(config(corpus_dir, prepared, plant_bad_batch_at=SPIKE, spike_action="rollback",
                 rollback_skip_batches=3), rolled)
    events = anomalies(rolled)
    assert events and all(e["action"] == "rollback" and e["rolled_back_to"] == 20
                          and e["skipped_batches"] == "20:28" and e["step"] == SPIKE for e in events)
    replay = tmp_path / "replay"
    train(config(corpus_dir, prepared, skip_batches="20:28"), replay)
    assert anomalies(replay) == []
    assert sorted(losses(rolled)) == list(range(1, 41))
    assert losses(rolled) == losses(replay)
    evals = [read_metrics(w / "metrics.jsonl", kind="eval") for w in (rolled, replay)]
    assert [e["loss"] for e in evals[0]] == [e["loss"] for e in evals[1]]


def test_skip_leaves_the_update_out(corpus_dir, prepared, tmp_path):
    """Skipping the update of step 25 trains as a run that never saw batch 24 does, one step
    behind: the skipped step advances the step count but not the optimizer or the data."""
    skipped = tmp_path / "skipped"
    train(config(corpus_dir, prepared, plant_bad_batch_at=SPIKE, spike_action="skip"), skipped)
    assert {(e["step"], e["action"]) for e in anomalies(skipped)} == {(SPIKE, "skip")}
    replay = tmp_path / "replay"
    train(config(corpus_dir, prepared, skip_batches="24:25"), replay)
    a, b = losses(skipped), losses(replay)
    assert [a[s] for s in range(1, SPIKE)] == [b[s] for s in range(1, SPIKE)]
    assert [a[s + 1] for s in range(SPIKE, 40)] == [b[s] for s in range(SPIKE, 40)]


def test_a_resumed_run_judges_steps_as_an_uninterrupted_one(corpus_dir, prepared, tmp_path):
    """The spike window travels in the checkpoints: resuming at step 20 (before the spike at
    25, with only 5 steps of new history) still flags it, with the same median and limit."""
    cfg = config(corpus_dir, prepared, plant_bad_batch_at=SPIKE, spike_action="skip", keep_last=5)
    train(cfg, tmp_path)
    before = [{k: v for k, v in e.items() if k != "time"} for e in anomalies(tmp_path)]
    for step in (30, 40):
        shutil.rmtree(tmp_path / "checkpoints" / str(step))
    train(cfg, tmp_path)
    assert [{k: v for k, v in e.items() if k != "time"} for e in anomalies(tmp_path)] == before
    assert before and before[0]["step"] == SPIKE


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(corpus_dir, prepared, tmp_path,
                                                                  capsys):
    cfg = config(corpus_dir, prepared, keep_last=5)
    train(cfg, tmp_path)
    straight = losses(tmp_path)
    for step in (30, 40):
        shutil.rmtree(tmp_path / "checkpoints" / str(step))
    newest = tmp_path / "checkpoints" / "20"
    victim = max((p for p in (newest / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    size, relative = victim.stat().st_size, victim.relative_to(newest)
    victim.write_bytes(victim.read_bytes()[: size // 2])
    capsys.readouterr()
    train(cfg, tmp_path)
    out, err = capsys.readouterr()
    assert (f"lm train: warning: checkpoint {newest} is corrupt: {relative} is truncated "
            f"({size // 2} of {size} bytes)") in err
    assert f"moved it to {tmp_path / 'checkpoints' / 'corrupt' / '20'}, falling back to step 10" in err
    assert f"[train] resumed from step 10 in {tmp_path / 'checkpoints'}" in out
    assert losses(tmp_path) == straight
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20", "30", "40", "corrupt"]


@pytest.mark.parametrize("field, value, message", [
    ("spike_action", "'restart'", "config field 'train.spike_action': 'restart' is not one of none, log, skip, rollback"),
    ("skip_batches", "'30:20'", "config field 'train.skip_batches': '30:20' is not START:END with 0 <= START < END (batch positions, END excluded)"),
    ("spike_min_history", "80", "config field 'train.spike_min_history': 80 is more than train.spike_window=50, so no step would ever be judged"),
    ("spike_window", "0", "config field 'train.spike_window'"),
])
def test_bad_spike_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [f"--config.train.{field}={value}"])
    assert str(err.value).startswith(message)
