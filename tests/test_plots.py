"""Tests for lm.train.plots.plot_loss."""

import json

import pytest
from matplotlib.figure import Figure

import lm.train.plots
from lm.train.plots import plot_loss

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_metrics(path, train, evals=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"step": s, "kind": "train", "time": 0.0, "loss": v} for s, v in train]
    lines += [{"step": s, "kind": "eval", "time": 0.0, "loss": v} for s, v in evals]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.fixture
def figures(monkeypatch):
    """Capture the Figure plot_loss draws, to inspect its axes."""
    made = []

    class Recording(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(lm.train.plots, "Figure", Recording)
    return made


def test_train_only_png(tmp_path, figures):
    train = [(s, 3.0 - 0.01 * s) for s in range(1, 101)]
    metrics = _write_metrics(tmp_path / "my_run" / "metrics.jsonl", train)
    out = tmp_path / "plots" / "loss.png"
    assert plot_loss(metrics, out) == out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in out.parent.iterdir()) == ["loss.png"]  # no temp file left
    (ax,) = figures[0].axes
    assert ax.get_title() == "my_run"
    assert ax.get_yscale() == "linear"
    (train_line,) = ax.get_lines()
    assert list(train_line.get_xdata()) == list(range(1, 101))


def test_eval_markers_and_log_scale(tmp_path, figures):
    train = [(s, 100.0 / s) for s in range(1, 201)]  # spans 100 -> 0.5
    evals = [(50, 2.1), (100, 1.05), (200, 0.6)]
    metrics = _write_metrics(tmp_path / "run2" / "metrics.jsonl", train + [(201, float("nan"))], evals)
    metrics.write_text(metrics.read_text().replace("NaN", '"nan"'))
    out = plot_loss(metrics, tmp_path / "run2" / "loss.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    (ax,) = figures[0].axes
    assert ax.get_yscale() == "log"
    train_line, eval_line = ax.get_lines()
    assert len(train_line.get_xdata()) == 200  # the NaN step is left out
    assert list(eval_line.get_xdata()) == [50, 100, 200]
    assert list(eval_line.get_ydata()) == [2.1, 1.05, 0.6]
    assert eval_line.get_linestyle() == "None" and eval_line.get_marker() == "o"


def test_loss_spikes_are_crosses(tmp_path, figures):
    metrics = _write_metrics(tmp_path / "metrics.jsonl", [(s, 3.0) for s in range(1, 31)])
    with metrics.open("a") as f:
        for metric, value in (("loss", 9.5), ("grad_norm", 40.0)):
            f.write(json.dumps({"step": 12, "kind": "anomaly", "time": 0.0, "metric": metric,
                                "value": value, "median": 3.0, "limit": 3.5, "action": "log"}) + "\n")
    plot_loss(metrics, tmp_path / "loss.png")
    train_line, spike_line = figures[0].axes[0].get_lines()
    assert list(spike_line.get_xdata()) == [12] and list(spike_line.get_ydata()) == [9.5]
    assert spike_line.get_marker() == "x" and spike_line.get_label() == "loss spike"


def test_overwrites_existing_png(tmp_path):
    metrics = _write_metrics(tmp_path / "metrics.jsonl", [(1, 2.0), (2, 1.5)])
    out = tmp_path / "loss.png"
    out.write_bytes(b"old")
    plot_loss(metrics, out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_no_train_loss_raises(tmp_path):
    metrics = _write_metrics(tmp_path / "metrics.jsonl", [], [(10, 2.0)])
    with pytest.raises(ValueError, match="metrics.jsonl has no finite train 'loss'"):
        plot_loss(metrics, tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
