"""Compile the train step for a TPU slice this machine does not have (`--topology`).

    lm train --config experiments/configs/llama_7b.py --compile-only --topology v5p:4x4x4

libtpu (the optional extra: `pip install -e '.[tpu]'`) describes the slice -- one
compile-only device per chip, laid out as on the real torus -- and the TPU compiler
compiles the trainer's own step for the config's mesh over those chips
(lm.train.memory.compile_train_step). Nothing runs and no TPU is needed; the process
itself stays on the CPU backend. It prints, per chip:

- HBM: parameters, optimizer state, temporaries and the peak, from the TPU compiler's
  buffer assignment, against the chip's HBM (HBM_GIB), with a warning when it does not fit
  (when the compiler itself gives up, RESOURCE_EXHAUSTED, its words, and the temporaries
  and program read from XLA's dumps of a second try);
- collectives: counts and bytes per step of each kind, read from the compiled HLO
  (lm.train.hlo);
- FLOPs: the step's matmul FLOPs per chip (its dots times their loops' trip counts,
  lm.train.hlo) and XLA's `cost_analysis` count (which counts a loop body once: for the
  scanned layer stack, about one layer), beside the model FLOPs the config implies
  (lm.scaling.counts), and the time those matmuls take at the chip's bf16 peak.

Topology names are libtpu's: `<generation>:<chips per dimension>`, e.g. v5e:2x2, v5e:16x16,
v5p:2x2x1, v5p:4x4x4, v6e:8x8, v4:2x2x1 -- chips, not the cores a Cloud accelerator type
(v5p-128) counts. v4 is compiled with its two TensorCores per chip as one device
(megacore), as v5p is by default.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any

import ml_collections

from lm.config import ConfigError

INSTALL = "pip install -e '.[tpu]'"
EXAMPLES = "v5e:2x2, v5e:16x16, v5p:2x2x1, v5p:4x4x4, v6e:8x8, v4:2x2x1"
GIB = 1024 ** 3

# HBM per chip, from the Cloud TPU system architecture pages (v4: "32 GiB"; v5e "16 GB",
# v5p "95 GB", v6e "32 GB" -- read as GiB: the chips carry 16, 96 and 32 GiB stacks, and a
# little is kept by the runtime, so a peak within a few percent of the figure is at risk).
HBM_GIB: dict[str, float] = {"TPU v4": 32, "TPU v5e": 16, "TPU v5p": 95, "TPU v6e": 32}
TIGHT = 0.9  # a peak above this share of HBM is flagged as tight
ADVICE = ("Shard more (mesh.fsdp=-1 mesh.data=1, mesh.tensor), recompute more "
          "(model.remat=full), split the batch (train.grad_accum), or take a bigger slice")


def advice(cfg: ml_collections.ConfigDict) -> str:
    """What to try when the step does not fit, leaving out what `cfg` already does."""
    m, t = cfg.mesh, cfg.train
    tries = []
    if not (m.fsdp == -1 and m.data == 1):
        tries.append("shard more (mesh.fsdp=-1 mesh.data=1, or mesh.tensor)")
    if cfg.model.remat != "full":
        tries.append("recompute more (model.remat=full)")
    if t.batch_size % (2 * t.grad_accum) == 0:
        tries.append(f"split the batch (train.grad_accum={2 * t.grad_accum})")
    tries.append("take a bigger slice")
    text = ", ".join(tries[:-1]) + (", or " if len(tries) > 1 else "") + tries[-1]
    return text[0].upper() + text[1:]


def tpu_compiler_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def prepare_environment() -> None:
    """Before jax starts: stay on the CPU backend, and let libtpu load without a TPU VM's
    metadata (quietly) and beside other processes that loaded it (its lock file)."""
    if not tpu_compiler_available():
        raise ConfigError(f"--topology needs the TPU compiler (libtpu), which is not "
                          f"installed: {INSTALL}")
    os.environ["JAX_PLATFORMS"] = "cpu"
    for key, value in (("ALLOW_MULTIPLE_LIBTPU_LOAD", "1"), ("TPU_SKIP_MDS_QUERY", "1"),
                       ("TPU_WORKER_HOSTNAMES", "localhost"), ("TPU_HOST_BOUNDS", "1,1,1")):
        os.environ.setdefault(key, value)


def _bad_topology(name: str, reason: str) -> ConfigError:
    return ConfigError(f"--topology {name!r}: {reason}; libtpu names a slice "
                       f"<generation>:<chips per dimension>, e.g. {EXAMPLES}")


def topology_devices(name: str) -> list[Any]:
    """The compile-only devices (one per chip) of the TPU slice `name`, e.g. "v5p:4x4x4"."""
    if not re.fullmatch(r"v\d+[a-z]*:\d+(x\d+)*(_twisted|_untwisted)?|tpu\d+[a-z]*:\d+(x\d+)*",
                        name):
        reason = ("a Cloud accelerator type counts TensorCores, not chips"
                  if re.fullmatch(r"v\d+[a-z]*-\d+", name) else "not a topology name")
        raise _bad_topology(name, reason)
    prepare_environment()
    from jax.experimental import topologies

    kwargs = {"chip_config_name": "megacore"} if name.startswith("v4:") else {}
    try:
        try:
            return list(topologies.get_topology_desc(name, "tpu", **kwargs).devices)
        except Exception as err:  # slices smaller than one host's 2x2 chips
            if "chips_per_host_bounds" not in str(err):
                raise
            return list(topologies.get_topology_desc(name, "tpu", chips_per_host_bounds=(1, 1, 1),
                                                     **kwargs).devices)
    except Exception as err:  # libtpu's errors are JaxRuntimeError("INVALID_ARGUMENT: ...")
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _bad_topology(name, re.sub(r"^[A-Z_]+: ", "", reason).rstrip(".")) from err


def chip_row(device_kind: str) -> str:
    """The chip's row in lm.train.peak.PEAK_FLOPS / HBM_GIB ("TPU v5p"), or its own kind."""
    from lm.train.peak import lookup_peak_flops

    found = lookup_peak_flops(device_kind, "bfloat16")
    return found[1] if found else device_kind


@dataclass(frozen=True)
class TpuReport:
    topology: str
    chip: str
    hbm_bytes: int | None  # None: a chip HBM_GIB does not list
    peak_flops: float | None  # bf16 FLOP/s per chip (lm.train.peak.PEAK_FLOPS)
    memory: Any  # lm.train.memory.MemoryReport, per chip
    xla_flops: float  # XLA's cost analysis of the compiled step, per chip (loop bodies once)
    matmul_flops: float  # the step's dots, loop trips included (lm.train.hlo), / chips
    model_flops: float  # lm.scaling.counts.mfu_flops_per_token x tokens / chips
    six_n_flops: float  # 6 x parameters x tokens / chips
    compiler_error: str | None = None  # the TPU compiler's out-of-HBM message, when it gave one
    advice: str = ADVICE  # what to try when it does not fit (`advice(cfg)`)

    @property
    def fits(self) -> bool | None:
        if self.compiler_error:
            return False
        return None if self.hbm_bytes is None else self.memory.peak_bytes <= self.hbm_bytes

    def as_dict(self) -> dict[str, Any]:
        return {"topology": self.topology, "chip": self.chip, "hbm_bytes": self.hbm_bytes,
                "fits": self.fits, "peak_flops": self.peak_flops, "xla_flops": self.xla_flops,
                "matmul_flops": self.matmul_flops, "compiler_error": self.compiler_error,
                "model_flops": self.model_flops, "six_n_flops": self.six_n_flops,
                **self.memory.as_dict()}

    def fit_line(self) -> str:
        peak = self.memory.peak_bytes
        if self.compiler_error:
            return (f"WARNING: does not fit: the TPU compiler ran out of HBM on a {self.chip}: "
                    f"{self.compiler_error}. {self.advice}")
        if self.hbm_bytes is None:
            return f"HBM: no figure for {self.chip} in lm.train.tpu_compile.HBM_GIB; not checked"
        share = peak / self.hbm_bytes
        if share > 1:
            return (f"WARNING: does not fit: peak {peak / GIB:,.1f} GiB per chip > "
                    f"{self.hbm_bytes / GIB:,.0f} GiB HBM of a {self.chip} ({share:.0%}). "
                    f"{self.advice}")
        note = "; tight: the runtime keeps some HBM too" if share > TIGHT else ""
        return (f"fits: peak {peak / GIB:,.1f} of {self.hbm_bytes / GIB:,.0f} GiB HBM per chip "
                f"({share:.0%}){note}")

    def table(self) -> str:
        m = self.memory
        hbm = "" if self.hbm_bytes is None else f", {self.hbm_bytes / GIB:,.0f} GiB HBM each"
        done = "the TPU compiler gave up" if self.compiler_error else "compiled by the TPU compiler"
        big = max(m.peak_bytes, m.param_bytes + m.opt_state_bytes) >= GIB
        unit, scale = ("GiB", GIB) if big else ("MiB", 2 ** 20)
        lines = [f"[tpu] {self.topology}: {m.devices} x {self.chip}{hbm}; {m.params:,} parameters; "
                 f"mesh {m.describe_mesh()}; pipeline: {m.pipeline}; {done} in "
                 f"{m.compile_seconds:.1f} s",
                 f"{'per chip':<42}{unit:>12}{'of HBM':>12}"]
        rows = m.rows()
        if self.compiler_error:  # what the buffer assignment reported before giving up
            rows = rows[:3] + [("peak (state + temps), at least", m.peak_bytes)]
        for name, value in rows:
            share = "" if self.hbm_bytes is None else f"{value / self.hbm_bytes:.1%}"
            lines.append(f"{name:<42}{value / scale:>12,.2f}{share:>12}")
        lines.append(self.fit_line())
        from lm.train.hlo import collectives_table

        if m.collectives:
            lines.append(collectives_table(m.collectives, per="chip"))
        if m.unread_loops:
            lines.append(f"  ({m.unread_loops} loops of unread trip count, counted as run once)")
        lines.append(f"{'FLOPs per step (per chip)':<42}{'FLOPs':>12}{'/ model':>12}")
        for name, value in (("matmuls (HLO dots x loop trips)", self.matmul_flops),
                            ("XLA cost analysis (loop bodies once)", self.xla_flops),
                            ("model (lm.scaling.counts, no remat)", self.model_flops),
                            ("6N x tokens", self.six_n_flops)):
            if value:  # no cost analysis without an executable
                ratio = value / self.model_flops if self.model_flops else math.nan
                lines.append(f"{name:<42}{value:>12.3e}{ratio:>12.2f}")
        if self.peak_flops and self.matmul_flops:
            lines.append(f"at {self.peak_flops / 1e12:,.0f} TFLOP/s (bf16 peak per chip) the "
                         f"matmuls take {self.matmul_flops / self.peak_flops:,.3f} s per step: "
                         f"MFU {self.model_flops / self.matmul_flops:.0%} at best")
        return "\n".join(line for line in lines if line)


def _out_of_memory(step: Any, memory: Any) -> Any:
    """`memory` (the state's shards) completed from a compile that ran out of HBM: compiled
    again with XLA's dumps on, which keep the optimised program (its collectives) and the
    buffer assignment's total (the temporaries). The peak is then state + temporaries."""
    import tempfile
    from pathlib import Path

    from lm.train.hlo import count_collectives

    with tempfile.TemporaryDirectory(prefix="lm-tpu-oom-") as tmp:
        try:
            step.lowered.compile(compiler_options={"xla_dump_to": tmp})
        except Exception:  # the same RESOURCE_EXHAUSTED, expected
            pass
        found = {kind: sorted(Path(tmp).glob(f"*{kind}.txt"))
                 for kind in ("after_optimizations", "memory-usage-report")}
        hlo = found["after_optimizations"][0].read_text() if found["after_optimizations"] else ""
        usage = (found["memory-usage-report"][0].read_text()
                 if found["memory-usage-report"] else "")
    total = re.search(r"Total bytes: (\d+)", usage)
    collectives, unread = count_collectives(hlo) if hlo else ({}, 0)
    return replace(memory, temp_bytes=int(total.group(1)) if total else 0,
                   argument_bytes=memory.param_bytes + memory.opt_state_bytes,
                   collectives={kind: stats.as_dict() for kind, stats in collectives.items()},
                   unread_loops=unread)


def compile_for_topology(cfg: ml_collections.ConfigDict, topology: str) -> TpuReport:
    """Compile `cfg`'s train step with the TPU compiler for the slice `topology`. A step the
    compiler finds too big for HBM is reported (with the compiler's words), not raised."""
    devices = topology_devices(topology)
    from lm.scaling.counts import mfu_flops_per_token, six_n_flops_per_token
    from lm.train.hlo import matmul_flops
    from lm.train.memory import compile_lowered, compile_memory_report, lower_train_step
    from lm.train.peak import PEAK_FLOPS

    step = lower_train_step(cfg, devices)
    error, start = None, time.perf_counter()
    try:
        step = compile_lowered(step)
    except Exception as err:  # jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: ...")
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        error = re.sub(r"^RESOURCE_EXHAUSTED: ", "", str(err).strip().splitlines()[0]).rstrip(".")
    memory = compile_memory_report(cfg, step=step)
    if error:
        memory = _out_of_memory(step, memory)
        memory = replace(memory, compile_seconds=memory.compile_seconds
                         + time.perf_counter() - start)
    cost = step.compiled.cost_analysis() if step.compiled is not None else {}
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    chips = len(devices)
    tokens = cfg.train.batch_size * cfg.data.seq_len
    chip = chip_row(devices[0].device_kind)
    hbm = HBM_GIB.get(chip)
    return TpuReport(
        topology=topology, chip=chip, hbm_bytes=None if hbm is None else int(hbm * GIB),
        peak_flops=PEAK_FLOPS.get(chip, {}).get("bfloat16"), memory=memory,
        xla_flops=float((cost or {}).get("flops", 0.0)),
        matmul_flops=matmul_flops(step.lowered.as_text(dialect="hlo")) / chips,
        model_flops=mfu_flops_per_token(cfg.model, cfg.data.seq_len) * tokens / chips,
        six_n_flops=six_n_flops_per_token(cfg.model, non_embedding=False) * tokens / chips,
        compiler_error=error, advice=advice(cfg))
