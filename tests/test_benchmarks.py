"""Smoke test of benchmarks/train_step.py: it runs and its numbers are consistent (never its speed)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from lm.config import load_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_train_step_tiny(bench):
    cfg = load_config(bench.preset_path("tiny"), ["--config.train.batch_size=2",
                                                  "--config.data.seq_len=16"])
    # A fixed peak skips the CPU matmul probe (tests/test_peak.py covers it) to keep this fast.
    peak = 1e11
    row = bench.time_train_step(cfg, steps=2, warmup=1, label="tiny", peak=(peak, "fixed:test"))

    assert (row["preset"], row["batch_size"], row["seq_len"], row["steps"]) == ("tiny", 2, 16, 2)
    for key in ("params_total", "params_non_embedding", "compile_s", "median_step_s",
                "tokens_per_s", "model_tflops_per_s", "mfu", "mfu_6n", "peak_flops_per_device",
                "final_loss", "peak_memory_bytes"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["params_total"] > row["params_non_embedding"]
    tokens_per_step, step_s, devices = 2 * 16, row["median_step_s"], row["device_count"]
    assert row["tokens_per_s"] == pytest.approx(tokens_per_step / step_s)
    assert row["mfu"] == pytest.approx(
        row["model_flops_per_token"] * tokens_per_step / (step_s * devices * peak))
    assert row["mfu_6n"] == pytest.approx(
        row["six_n_flops_per_token"] * tokens_per_step / (step_s * devices * peak))
    assert row["model_flops_per_token"] > row["six_n_flops_per_token"] > 0
    assert "tiny" in bench.format_table([row])
    assert row["peak_memory_source"] == "XLA buffer assignment"  # CPU reports no allocator peak


def test_gpu_suite_rows_are_valid_configs():
    spec = importlib.util.spec_from_file_location("gpu_suite", BENCH.parent / "gpu_suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    for label, preset, overrides in suite.ROWS:
        cfg = load_config(suite.HERE / ".." / "experiments" / "configs" / f"{preset}.py", overrides)
        smoke = load_config(suite.HERE / ".." / "experiments" / "configs" / f"{preset}.py",
                            suite.smoke_overrides(overrides))
        assert smoke.model.attention != "cudnn", label  # no cuDNN on CPU
        assert (smoke.train.loss_chunk > 0) == (cfg.train.loss_chunk > 0), label
        assert cfg.model.compute_dtype == "bfloat16", label


@pytest.fixture(scope="module")
def switches():
    import sys
    sys.path.insert(0, str(BENCH.parent))  # switches.py imports train_step as a sibling
    try:
        path = BENCH.parent / "switches.py"
        spec = importlib.util.spec_from_file_location("bench_switches", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
    return module


def test_switches_measure_donation_and_checkpoint_saves(switches, tmp_path, capsys):
    out = tmp_path / "switches.json"
    code = switches.main(["--preset", "tiny", "--batch-size", "2", "--seq-len", "16",
                          "--rounds", "2", "--steps", "1", "--group", "donation",
                          "--group", "checkpoint", "--json", str(out),
                          "--config.model.num_layers=1", "--config.model.d_model=32",
                          "--config.model.d_ff=64"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["groups"]) == {"donation", "checkpoint"}
    on, off = report["groups"]["donation"]
    assert (on["variant"], off["variant"]) == ("donate_state=true", "donate_state=false")
    assert on["vs_baseline"] == 1.0 and len(on["step_s"]) == len(off["step_s"]) == 2
    assert on["alias_bytes"] > 0 and off["alias_bytes"] == 0
    assert on["final_loss"] == pytest.approx(off["final_loss"], rel=1e-6)  # same math
    saves = {r["variant"]: r for r in report["groups"]["checkpoint"]}
    assert set(saves) == {"no save", "sync save", "async save"}
    assert saves["no save"]["median_extra_s"] == 0.0 and saves["no save"]["median_blocked_s"] == 0.0
    for mode in ("sync save", "async save"):
        r = saves[mode]
        assert 0 < r["median_blocked_s"] <= r["median_written_s"], mode
        assert r["window_steps"] == 3 and len(r["window_s"]) == 2
    printed = capsys.readouterr().out
    assert "donate_state=false" in printed and "async save" in printed


def test_switches_refuse_a_bad_config_and_a_bad_group(switches, capsys):
    assert switches.main(["--preset", "tiny", "--config.model.remat=sometimes"]) == 2
    assert "remat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        switches.main(["--preset", "tiny", "--group", "turbo"])
