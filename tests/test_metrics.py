"""Tests for lm.train.metrics: JSONL, TensorBoard events, progress bar, resume."""

import json
import math
import struct
import time

import pytest
from tensorboardX.proto import event_pb2

from lm.train.metrics import MetricsLogger, read_metrics


def _strict_lines(path):
    """Parse every line as strict JSON (NaN/Infinity literals rejected)."""

    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return [json.loads(line, parse_constant=reject) for line in path.read_text().splitlines()]


def _events(tb_dir):
    """Every Event in the TFRecord event files under tb_dir (length, crc, data, crc)."""
    files = sorted(tb_dir.glob("events.out.tfevents.*"))
    assert files, f"no event files in {tb_dir}"
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            yield event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4


def _scalars(tb_dir):
    """(tag, step, value) for every scalar under tb_dir."""
    return [(v.tag, e.step, v.simple_value) for e in _events(tb_dir) for v in e.summary.value]


def _session_starts(tb_dir):
    """Steps of SessionLog START events (TensorBoard purges events at or after them)."""
    start = event_pb2.SessionLog.START
    return [e.step for e in _events(tb_dir) if e.HasField("session_log") and e.session_log.status == start]


def test_jsonl_contents_and_order(tmp_path):
    before = time.time()
    with MetricsLogger(tmp_path, total_steps=10, tensorboard=False) as logger:
        logger.log(1, {"loss": 3.5, "tokens_per_s": 1000.0})
        logger.log(2, {"loss": 3.0, "tokens": 4096})
        logger.log(2, {"loss": 3.25}, kind="eval")
        logger.log(3, {"loss": 2.5})
    lines = _strict_lines(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["kind"]) for r in lines] == [(1, "train"), (2, "train"), (2, "eval"), (3, "train")]
    assert list(lines[0]) == ["step", "kind", "time", "loss", "tokens_per_s"]
    assert lines[0]["loss"] == 3.5 and lines[0]["tokens_per_s"] == 1000.0
    assert lines[1]["tokens"] == 4096 and isinstance(lines[1]["tokens"], int)
    assert all(before <= r["time"] <= time.time() for r in lines)
    assert not (tmp_path / "tensorboard").exists()


def test_each_line_is_flushed_before_close(tmp_path):
    logger = MetricsLogger(tmp_path, total_steps=5, tensorboard=False)
    logger.log(1, {"loss": 1.0})
    assert [r["step"] for r in _strict_lines(tmp_path / "metrics.jsonl")] == [1]
    logger.close()
    logger.close()  # idempotent


def test_non_finite_values_stay_valid_json(tmp_path):
    with MetricsLogger(tmp_path, total_steps=5, tensorboard=False) as logger:
        logger.log(1, {"loss": float("nan"), "grad_norm": float("inf"), "delta": float("-inf")})
    (line,) = _strict_lines(tmp_path / "metrics.jsonl")
    assert (line["loss"], line["grad_norm"], line["delta"]) == ("nan", "inf", "-inf")
    (record,) = read_metrics(tmp_path / "metrics.jsonl")
    assert math.isnan(record["loss"])
    assert record["grad_norm"] == math.inf and record["delta"] == -math.inf
    assert record["kind"] == "train"


def test_numpy_and_jax_scalars_are_accepted(tmp_path):
    import jax.numpy as jnp
    import numpy as np

    with MetricsLogger(tmp_path, total_steps=5, tensorboard=False) as logger:
        logger.log(np.int64(1), {"loss": jnp.float32(0.5), "n": np.int32(7), "lr": np.float64(1e-3)})
    (line,) = _strict_lines(tmp_path / "metrics.jsonl")
    assert line == {"step": 1, "kind": "train", "time": line["time"], "loss": 0.5, "n": 7, "lr": 1e-3}


def test_bad_metrics_raise(tmp_path):
    with MetricsLogger(tmp_path, total_steps=5, tensorboard=False) as logger:
        with pytest.raises(ValueError, match="reserved"):
            logger.log(1, {"step": 1.0})
        with pytest.raises(TypeError, match="'note'.*not a number"):
            logger.log(1, {"note": "hello"})
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(2, {"loss": 1.0})
    with pytest.raises(ValueError, match="start_step=6, total_steps=5"):
        MetricsLogger(tmp_path, total_steps=5, start_step=6)


def test_resume_drops_steps_after_the_checkpoint_step(tmp_path):
    with MetricsLogger(tmp_path, total_steps=10) as logger:
        for step in range(1, 9):
            logger.log(step, {"loss": 10.0 - step})
            if step % 4 == 0:
                logger.log(step, {"loss": 9.5 - step}, kind="eval")
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as f:
        f.write('{"step": 9, "kind": "tr')  # killed mid-write

    # Resuming from the checkpoint of step 4: its train and eval lines stay.
    with MetricsLogger(tmp_path, total_steps=10, start_step=4) as logger:
        kept = _strict_lines(path)
        assert [(r["step"], r["kind"]) for r in kept] == [
            (1, "train"), (2, "train"), (3, "train"), (4, "train"), (4, "eval")
        ]
        logger.log(5, {"loss": 4.75})
        logger.log(6, {"loss": 3.75})
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in read_metrics(path)][-2:] == [4.75, 3.75]
    assert [r["step"] for r in read_metrics(path, kind="eval")] == [4]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # TensorBoard hides the crashed run's events from step 5 on via a purge marker.
    assert 5 in _session_starts(tmp_path / "tensorboard")


def test_fresh_run_starts_empty_file(tmp_path):
    with MetricsLogger(tmp_path, total_steps=3, tensorboard=False) as logger:
        logger.log(1, {"loss": 1.0})
    with MetricsLogger(tmp_path, total_steps=3, tensorboard=False):
        pass
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_resume_refuses_corrupt_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "kind": "train"}\nGARBAGE\n{"step": 3, "kind": "train"}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: malformed"):
        MetricsLogger(tmp_path, total_steps=5, start_step=2)


def test_disabled_logger_does_nothing(tmp_path):
    workdir = tmp_path / "run"
    with MetricsLogger(workdir, total_steps=5, enabled=False) as logger:
        logger.log(1, {"loss": 1.0})
        logger.log(1, {"loss": 1.0}, kind="eval")
    logger.log(2, {"loss": 1.0})
    assert not workdir.exists()


def test_tensorboard_scalars(tmp_path):
    with MetricsLogger(tmp_path, total_steps=5) as logger:
        logger.log(1, {"loss": 2.5, "mfu": 0.25})
        logger.log(2, {"loss": 2.0})
        logger.log(2, {"loss": 2.25}, kind="eval")
    scalars = _scalars(tmp_path / "tensorboard")
    assert ("train/loss", 1, 2.5) in scalars
    assert ("train/mfu", 1, 0.25) in scalars
    assert ("train/loss", 2, 2.0) in scalars
    assert ("eval/loss", 2, 2.25) in scalars
    assert len(scalars) == 4


def test_console_progress_and_eval_line(tmp_path, capsys):
    with MetricsLogger(tmp_path, total_steps=100, start_step=0, tensorboard=False) as logger:
        logger.log(50, {"loss": 2.34567, "tokens_per_s": 1_234_567.0, "mfu": 0.41})
        logger.log(50, {"loss": 2.5, "accuracy": 0.5}, kind="eval")
    out, err = capsys.readouterr()
    assert "eval step 50: loss=2.5 accuracy=0.5" in out
    assert "50/100" in err
    assert "loss=2.346 tok/s=1.23M mfu=41.0%" in err


def test_read_metrics_skips_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "kind": "train", "loss": 2.0}\n'
        '{"step": 1, "kind": "eval", "loss": 2.5}\n'
        '{"step": 2, "kind": "train", "lo'
    )
    assert read_metrics(path) == [{"step": 1, "kind": "train", "loss": 2.0}]
    assert [r["kind"] for r in read_metrics(path, kind=None)] == ["train", "eval"]
    assert read_metrics(path, kind="eval") == [{"step": 1, "kind": "eval", "loss": 2.5}]


@pytest.mark.parametrize(
    "bad_line", ["{not json", "[1, 2]", '{"kind": "train"}', '{"step": "3", "kind": "train"}']
)
def test_read_metrics_malformed_middle_line_names_file_and_line(tmp_path, bad_line):
    path = tmp_path / "metrics.jsonl"
    good = '{"step": 1, "kind": "train"}\n{"step": 2, "kind": "train"}\n'
    path.write_text(f'{good}{bad_line}\n{{"step": 3, "kind": "train"}}\n')
    with pytest.raises(ValueError, match=rf"{path}:3: malformed metrics line"):
        read_metrics(path)
