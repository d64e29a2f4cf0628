"""`lm train --compile-only`: per-device memory from an AOT compile, on simulated devices."""

import json
import os
import subprocess
import sys

from lm.config import load_config
from lm.scaling.counts import param_counts
from lm.train.memory import compile_memory_report

LOW_OPT = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
TINY = "experiments/configs/tiny.py"


def compile_only(*args: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=LOW_OPT)
    result = subprocess.run([sys.executable, "-m", "lm.cli", "train", "--config", TINY,
                             "--compile-only", "--devices", "8", *args],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "per device" in result.stdout and "temporaries" in result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_compile_only_reports_sharded_memory_without_a_workdir(tmp_path):
    fsdp8 = compile_only("--config.mesh.data=1", "--config.mesh.fsdp=8")
    staged = compile_only("--config.mesh.data=4", "--config.mesh.stage=2")
    params = param_counts(load_config(TINY).model).total
    assert fsdp8["devices"] == 8 and fsdp8["mesh"]["fsdp"] == 8
    assert fsdp8["params"] == params
    # tiny's dims all divide by 8: each device holds exactly 1/8 of the f32 parameters
    assert fsdp8["param_bytes"] * 8 == params * 4
    assert 2 * fsdp8["param_bytes"] <= fsdp8["opt_state_bytes"] <= 2 * fsdp8["param_bytes"] + 64
    # 2 stages hold half the layers each; embeddings (tied) and norms are replicated
    assert params * 4 / 2 < staged["param_bytes"] < params * 4
    assert "2 stages x 2 microbatches" in staged["pipeline"]
    assert staged["temp_bytes"] > 0 and staged["peak_bytes"] >= staged["argument_bytes"]
    assert not any(tmp_path.iterdir())


def test_a_mesh_that_does_not_fit_the_devices_is_named():
    env = dict(os.environ, XLA_FLAGS=LOW_OPT)
    result = subprocess.run([sys.executable, "-m", "lm.cli", "train", "--config", TINY,
                             "--compile-only", "--devices", "8", "--config.mesh.data=3"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "mesh axis sizes (data=3" in result.stderr and "8 devices" in result.stderr


def test_donate_state_decides_whether_the_new_state_reuses_the_old_buffers():
    shape = ["--config.train.batch_size=2", "--config.data.seq_len=16"]
    donated = compile_memory_report(load_config(TINY, shape))
    kept = compile_memory_report(load_config(TINY, shape + ["--config.train.donate_state=false"]))
    state_bytes = donated.param_bytes + donated.opt_state_bytes
    assert donated.alias_bytes >= state_bytes  # params and moments updated in place
    assert kept.alias_bytes == 0
    # without donation the new state is written beside the old one
    untemp = lambda r: r.peak_bytes - r.temp_bytes
    assert untemp(kept) >= untemp(donated) + state_bytes


def test_remat_saves_memory_even_when_the_layer_scan_is_fully_unrolled():
    # Unrolled into straight-line code, XLA would schedule the recomputation next to the
    # forward pass and keep every activation; lm keeps the scan a loop under remat.
    shape = ["--config.model.num_layers=4", "--config.model.scan_unroll=4",
             "--config.train.batch_size=8", "--config.data.seq_len=128"]
    temps = {remat: compile_memory_report(load_config(
        TINY, shape + [f"--config.model.remat={remat}"])).temp_bytes for remat in ("none", "full")}
    assert temps["full"] < 0.6 * temps["none"], temps


def test_the_update_keeps_no_normalised_or_clipped_copy_of_the_gradients():
    # A model whose parameters dwarf its activations (1 x 16 tokens), so its temporaries are
    # mostly gradient-sized buffers: the gradients, and (tied embeddings) the lookup's and
    # the head's halves of the embedding gradient. Clipping with optax's per-leaf where
    # wrote a clipped copy too (3.0x the parameters' bytes; now 1.9x).
    shape = ["--config.model.d_model=256", "--config.model.d_ff=1024",
             "--config.model.vocab_size=4096", "--config.train.batch_size=1",
             "--config.data.seq_len=16"]
    clipped = compile_memory_report(load_config(TINY, shape + ["--config.train.clip_norm=1.0"]))
    unclipped = compile_memory_report(load_config(TINY, shape + ["--config.train.clip_norm=0"]))
    assert clipped.temp_bytes < 2.5 * clipped.param_bytes, (clipped.temp_bytes, clipped.param_bytes)
    assert clipped.temp_bytes - unclipped.temp_bytes < 0.25 * clipped.param_bytes
