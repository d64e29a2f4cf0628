"""Tests for lm.train.peak: datasheet table, cached CPU matmul probe, MFU."""

import json
import math
from types import SimpleNamespace

import jax
import pytest

from lm.train import peak
from lm.train.peak import PEAK_FLOPS, lookup_peak_flops, mfu, peak_flops_per_device


@pytest.mark.parametrize(
    "kind, dtype, row",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "bfloat16", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "float32", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "bfloat16", "NVIDIA H200 SXM"),
        ("NVIDIA A100-SXM4-40GB", "bfloat16", "NVIDIA A100"),
        ("NVIDIA A100 80GB PCIe", "float32", "NVIDIA A100"),
        ("NVIDIA L4", "bfloat16", "NVIDIA L4"),
        ("TPU v4", "bfloat16", "TPU v4"),
        ("TPU v5 lite", "bfloat16", "TPU v5e"),
        ("TPU v5", "bfloat16", "TPU v5p"),
        ("TPU v5p", "bfloat16", "TPU v5p"),
        ("TPU v6 lite", "float32", "TPU v6e"),
    ],
)
def test_table_lookup(kind, dtype, row):
    assert lookup_peak_flops(kind, dtype) == (PEAK_FLOPS[row][dtype], row)


def test_table_figures_are_dense_datasheet_values():
    assert PEAK_FLOPS["NVIDIA H100 SXM"]["bfloat16"] == 989.5e12
    assert PEAK_FLOPS["NVIDIA A100"]["bfloat16"] == 312e12
    assert PEAK_FLOPS["TPU v5e"]["bfloat16"] == 197e12


@pytest.mark.parametrize("kind", ["cpu", "NVIDIA L40S", "NVIDIA A10", "NVIDIA GeForce RTX 4090", ""])
def test_unknown_kinds_are_not_in_table(kind):
    assert lookup_peak_flops(kind, "bfloat16") is None


def test_bad_dtype_raises():
    with pytest.raises(ValueError, match="'float16'.*bfloat16"):
        lookup_peak_flops("NVIDIA H100 PCIe", "float16")
    with pytest.raises(ValueError, match="'int8'"):
        peak_flops_per_device("int8")


def _fake_devices(monkeypatch, kind, platform="gpu"):
    dev = SimpleNamespace(device_kind=kind, platform=platform)
    monkeypatch.setattr(peak.jax, "local_devices", lambda: [dev, dev])


def _count_probe(monkeypatch, value=1.5e12):
    calls = []

    def probe(dtype):
        calls.append(dtype)
        return value

    monkeypatch.setattr(peak, "_measure_matmul_flops", probe)
    return calls


def test_known_accelerator_uses_table(monkeypatch, tmp_path):
    _fake_devices(monkeypatch, "NVIDIA H100 80GB HBM3")
    calls = _count_probe(monkeypatch)
    assert peak_flops_per_device("bfloat16", cache_dir=tmp_path) == (989.5e12, "table:NVIDIA H100 80GB HBM3")
    assert calls == []
    assert not (tmp_path / "peak_flops.json").exists()


def test_unknown_accelerator_is_measured_per_dtype(monkeypatch, tmp_path):
    _fake_devices(monkeypatch, "Mystery Chip 9000")
    calls = _count_probe(monkeypatch)
    assert peak_flops_per_device("bfloat16", cache_dir=tmp_path) == (1.5e12, "measured:gpu-matmul-probe")
    assert peak_flops_per_device("float32", cache_dir=tmp_path) == (1.5e12, "measured:gpu-matmul-probe")
    assert peak_flops_per_device("bfloat16", cache_dir=tmp_path)[0] == 1.5e12
    assert calls == ["bfloat16", "float32"]
    keys = [json.loads(k) for k in json.loads((tmp_path / "peak_flops.json").read_text())]
    assert sorted(k["dtype"] for k in keys) == ["bfloat16", "float32"]
    assert {k["device_kind"] for k in keys} == {"Mystery Chip 9000"}
    assert {k["num_devices"] for k in keys} == {2}


def test_cpu_probe_measures_once_and_caches(monkeypatch, tmp_path):
    flops, source = peak_flops_per_device("float32", cache_dir=tmp_path)
    assert source == "measured:cpu-matmul-probe"
    assert math.isfinite(flops) and flops > 1e8
    cache = json.loads((tmp_path / "peak_flops.json").read_text())
    ((key, cached),) = cache.items()
    assert cached == flops
    fields = json.loads(key)
    assert fields["platform"] == "cpu" and fields["dtype"] == "float32"
    assert fields["jax"] == jax.__version__ and fields["num_devices"] == jax.local_device_count()

    calls = _count_probe(monkeypatch)
    assert peak_flops_per_device("float32", cache_dir=tmp_path) == (flops, source)
    # The CPU probe runs in float32 whatever dtype is asked for, so bf16 shares the entry.
    assert peak_flops_per_device("bfloat16", cache_dir=tmp_path) == (flops, source)
    assert calls == []


def test_refresh_keeps_the_best_probe(monkeypatch, tmp_path):
    _fake_devices(monkeypatch, "Mystery Chip 9000")
    _count_probe(monkeypatch, 1.0e12)  # a probe taken under load
    assert peak_flops_per_device(cache_dir=tmp_path)[0] == 1.0e12
    calls = _count_probe(monkeypatch, 2.5e12)
    assert peak_flops_per_device(cache_dir=tmp_path)[0] == 1.0e12 and calls == []  # cached
    assert peak_flops_per_device(cache_dir=tmp_path, refresh=True)[0] == 2.5e12
    _count_probe(monkeypatch, 2.0e12)  # a slower probe never lowers the figure
    assert peak_flops_per_device(cache_dir=tmp_path, refresh=True)[0] == 2.5e12
    assert peak_flops_per_device(cache_dir=tmp_path)[0] == 2.5e12


def test_cache_dir_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LM_CACHE_DIR", str(tmp_path / "cache"))
    calls = _count_probe(monkeypatch, 7.0e10)
    assert peak_flops_per_device() == (7.0e10, "measured:cpu-matmul-probe")
    assert calls == ["float32"]
    assert list(json.loads((tmp_path / "cache" / "peak_flops.json").read_text()).values()) == [7.0e10]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": "fast"}', ""])
def test_corrupt_cache_is_rewritten(monkeypatch, tmp_path, content):
    path = tmp_path / "peak_flops.json"
    path.write_text(content)
    calls = _count_probe(monkeypatch, 3.0e10)
    assert peak_flops_per_device(cache_dir=tmp_path)[0] == 3.0e10
    assert list(json.loads(path.read_text()).values()) == [3.0e10]
    assert peak_flops_per_device(cache_dir=tmp_path)[0] == 3.0e10
    assert calls == ["float32"]
    assert [p.name for p in tmp_path.iterdir()] == ["peak_flops.json"]


def test_unwritable_cache_dir_names_the_fix(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _count_probe(monkeypatch)
    with pytest.raises(OSError, match="LM_CACHE_DIR"):
        peak_flops_per_device(cache_dir=blocker / "sub")


def test_mfu_formula():
    assert mfu(6e15, 2.0, 8, 1e15) == pytest.approx(0.375)
    assert mfu(989.5e12, 1.0, 1, 989.5e12) == pytest.approx(1.0)
    assert mfu(0.0, 1.0, 4, 1e12) == 0.0


@pytest.mark.parametrize("args", [(1e12, 0.0, 1, 1e12), (1e12, 1.0, 0, 1e12), (1e12, 1.0, 1, -1.0)])
def test_mfu_rejects_bad_inputs(args):
    with pytest.raises(ValueError, match="mfu needs"):
        mfu(*args)
