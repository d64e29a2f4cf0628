"""Peak FLOP/s per device, the denominator of model FLOPs utilisation (MFU).

Known accelerators come from a table of vendor datasheet figures; the CPU and
unknown accelerators are measured once with a matmul probe and cached on disk.

The "float32" column is the peak for float32 matmuls at JAX's *default*
precision, which trades accuracy for speed: TF32 tensor cores on NVIDIA
Ampere/Hopper/Ada and single-pass bfloat16 on TPU (see JAX's "Matmul
precision" docs). Runs that set ``jax_default_matmul_precision="highest"``
will show a lower MFU than the hardware can reach in that mode.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lm.files import atomic_write

DTYPES = ("bfloat16", "float32")

# Dense (no structured sparsity) peak FLOP/s per chip. NVIDIA datasheets print
# tensor-core figures "with sparsity"; the dense figure is half of that.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    # H100 datasheet: SXM BF16 1,979 TFLOPS* / TF32 989 TFLOPS* (*sparse).
    "NVIDIA H100 SXM": {"bfloat16": 989.5e12, "float32": 494.7e12},
    # H100 datasheet: PCIe BF16 1,513 TFLOPS* / TF32 756 TFLOPS* (*sparse).
    "NVIDIA H100 PCIe": {"bfloat16": 756.5e12, "float32": 378e12},
    # H100 datasheet: NVL BF16 1,671 TFLOPS* / TF32 835 TFLOPS* (*sparse).
    "NVIDIA H100 NVL": {"bfloat16": 835.5e12, "float32": 417.5e12},
    # H200 datasheet: SXM BF16 1,979 TFLOPS* / TF32 989 TFLOPS* (*sparse).
    "NVIDIA H200 SXM": {"bfloat16": 989.5e12, "float32": 494.7e12},
    # H200 datasheet: NVL BF16 1,671 TFLOPS* / TF32 835 TFLOPS* (*sparse).
    "NVIDIA H200 NVL": {"bfloat16": 835.5e12, "float32": 417.5e12},
    # A100 datasheet (40GB and 80GB, SXM and PCIe): BF16 312 / TF32 156 TFLOPS dense.
    "NVIDIA A100": {"bfloat16": 312e12, "float32": 156e12},
    # L4 datasheet: BF16 242 TFLOPS* / TF32 120 TFLOPS* (*sparse).
    "NVIDIA L4": {"bfloat16": 121e12, "float32": 60e12},
    # Cloud TPU docs, peak compute per chip (bf16); f32 runs one bf16 pass.
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6e": {"bfloat16": 918e12, "float32": 918e12},
}

# How a `jax.Device.device_kind` maps to a PEAK_FLOPS row. The kind is lower-cased
# and split into alphanumeric tokens ("NVIDIA A100-SXM4-80GB" -> nvidia, a100,
# sxm4, 80gb); the first rule whose tokens all appear wins, so more specific
# rules come first. Whole tokens keep "L4" from matching "L40S" and "A100"
# from matching "A10". Kinds matching no rule are measured instead.
_KIND_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h100", "pcie"), "NVIDIA H100 PCIe"),
    (("h100", "nvl"), "NVIDIA H100 NVL"),
    (("h100",), "NVIDIA H100 SXM"),  # SXM reports "NVIDIA H100 80GB HBM3"
    (("h200", "nvl"), "NVIDIA H200 NVL"),
    (("h200",), "NVIDIA H200 SXM"),
    (("a100",), "NVIDIA A100"),
    (("l4",), "NVIDIA L4"),
    (("tpu", "v5", "lite"), "TPU v5e"),
    (("tpu", "v5e"), "TPU v5e"),
    (("tpu", "v5p"), "TPU v5p"),
    (("tpu", "v5"), "TPU v5p"),  # v5p reports "TPU v5"
    (("tpu", "v6", "lite"), "TPU v6e"),
    (("tpu", "v6e"), "TPU v6e"),
    (("tpu", "v4"), "TPU v4"),
)

_CACHE_FILE = "peak_flops.json"


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} has no peak FLOP/s; use one of {DTYPES}")


def lookup_peak_flops(device_kind: str, dtype: str = "float32") -> tuple[float, str] | None:
    """Return (table peak FLOP/s, PEAK_FLOPS row) for a device kind, or None if unknown."""
    _check_dtype(dtype)
    tokens = set(re.findall(r"[a-z0-9]+", device_kind.lower()))
    for rule, row in _KIND_RULES:
        if tokens.issuperset(rule):
            return PEAK_FLOPS[row][dtype], row
    return None


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _measure_matmul_flops(dtype: str) -> float:
    """Best sustained matmul FLOP/s per device, with every local device busy at once.

    Each device runs a chain of dependent square matmuls (so XLA cannot hoist
    them); on the CPU, forced host devices share the cores, so measuring them
    together gives the rate each one really gets.
    """
    devices = jax.local_devices()
    on_cpu = devices[0].platform == "cpu"
    n = 1024 if on_cpu else 4096
    # Keep total work per repetition fixed on the CPU however many devices share it.
    iters = max(1, 4 // len(devices)) if on_cpu else 8
    sharding = NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d"))
    shape = (len(devices), n, n)
    x = jax.device_put(jax.random.normal(jax.random.key(0), shape, dtype), sharding)
    # Scaling by 1/sqrt(n) keeps the chained product's magnitude roughly constant.
    w = jax.device_put(jax.random.normal(jax.random.key(1), shape, dtype) / math.sqrt(n), sharding)

    @jax.jit
    def chain(x: jax.Array, w: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, iters, lambda _, c: jnp.matmul(c, w), x)

    chain(x, w).block_until_ready()  # compile and warm up
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        chain(x, w).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 * iters / best


def _default_cache_dir() -> Path:
    env = os.environ.get("LM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lm"


def _read_cache(path: Path) -> dict[str, float]:
    """Cached probe results; a missing or corrupt file reads as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, (int, float)) and math.isfinite(v) and v > 0
    }


def _write_cache(path: Path, cache: dict[str, float]) -> None:
    """Write the cache atomically (temp file in the same directory, then rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(json.dumps(cache, indent=1, sort_keys=True).encode("utf-8"))
    except OSError as e:
        raise OSError(
            f"cannot write the peak FLOP/s cache {path}: {e}; "
            "set LM_CACHE_DIR or pass cache_dir to a writable directory"
        ) from e


def peak_flops_per_device(dtype: str = "float32", *, cache_dir: Path | None = None,
                          refresh: bool = False) -> tuple[float, str]:
    """Return (peak FLOP/s per device, source) for this process's devices.

    Source is "table:<device_kind>" for a known accelerator, else
    "measured:<platform>-matmul-probe": the probe runs once per machine and its
    result is cached in ``cache_dir`` (default ``$LM_CACHE_DIR`` or
    ``~/.cache/lm``). On the CPU the probe always runs in float32, whatever
    ``dtype`` asks for (bfloat16 matmuls are no faster there), so both dtypes
    share one cached figure.

    ``refresh`` probes again and keeps the best figure seen: a probe taken while
    other work loaded the machine reads low, and every later MFU would read high.
    Benchmarks refresh; the trainer uses the cache.
    """
    _check_dtype(dtype)
    devices = jax.local_devices()
    device = devices[0]
    known = lookup_peak_flops(device.device_kind, dtype)
    if known is not None:
        return known[0], f"table:{device.device_kind}"

    probe_dtype = "float32" if device.platform == "cpu" else dtype
    key = json.dumps(
        {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "num_devices": len(devices),
            "jax": jax.__version__,
            "dtype": probe_dtype,
        },
        sort_keys=True,
    )
    path = (cache_dir if cache_dir is not None else _default_cache_dir()) / _CACHE_FILE
    cache = _read_cache(path)
    if key not in cache or refresh:
        cache[key] = max(cache.get(key, 0.0), _measure_matmul_flops(probe_dtype))
        _write_cache(path, cache)
    return cache[key], f"measured:{device.platform}-matmul-probe"


def mfu(model_flops_per_step: float, step_seconds: float, num_devices: int, peak_per_device: float) -> float:
    """Model FLOPs utilisation: model_flops_per_step / (step_seconds * num_devices * peak_per_device).

    ``model_flops_per_step`` counts the FLOPs the model needs for one optimizer
    step over all devices (not what the hardware executed, e.g. no
    rematerialisation); the result is a fraction in [0, 1] for a sane setup.
    """
    if step_seconds <= 0 or num_devices < 1 or peak_per_device <= 0:
        raise ValueError(
            f"mfu needs step_seconds > 0, num_devices >= 1 and peak_per_device > 0; got "
            f"step_seconds={step_seconds}, num_devices={num_devices}, peak_per_device={peak_per_device}"
        )
    return model_flops_per_step / (step_seconds * num_devices * peak_per_device)
