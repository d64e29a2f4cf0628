"""`lm train` on a mesh of 8 simulated CPU devices gives the single-device losses."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lm.train.metrics import read_metrics
from tests.helpers import write_small_stdlib_corpus

LOW_OPT = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def train(workdir, corpus, devices: int, *mesh: str):
    env = dict(os.environ, XLA_FLAGS=f"{LOW_OPT} --xla_force_host_platform_device_count={devices}")
    result = subprocess.run(
        [sys.executable, "-m", "lm.cli", "train", "--config", "experiments/configs/tiny.py",
         "--workdir", str(workdir), f"--config.data.sources=['{corpus}']",
         "--config.data.heldout_fraction=0.1", "--config.train.steps=6",
         "--config.train.warmup_steps=1", "--config.train.eval_every=3",
         "--config.train.eval_batches=1", *mesh],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_metrics(workdir / "metrics.jsonl", kind=None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_small_stdlib_corpus(tmp_path_factory.mktemp("corpus"), max_bytes=150_000)


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    return train(tmp_path_factory.mktemp("one"), corpus, 1)


@pytest.mark.parametrize("mesh", [("--config.mesh.data=4", "--config.mesh.stage=2"),
                                  ("--config.mesh.data=2", "--config.mesh.fsdp=4",
                                   "--config.train.grad_accum=2"),
                                  ("--config.mesh.data=-1", "--config.mesh.tensor=2")],
                         ids=["data4-stage2", "data2-fsdp4-accum2", "data4-tensor2"])
def test_sharded_run_matches_one_device(corpus, single, tmp_path, mesh):
    sharded = train(tmp_path, corpus, 8, *mesh)
    assert [(r["step"], r["kind"]) for r in sharded] == [(r["step"], r["kind"]) for r in single]
    np.testing.assert_allclose([r["loss"] for r in sharded], [r["loss"] for r in single], rtol=2e-5)
