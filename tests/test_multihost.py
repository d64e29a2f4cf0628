"""Two processes on localhost (CPU collectives over gloo), 4 simulated devices each, train on
one 8-device mesh with the losses of one 8-device process; the checkpoint they write
collectively restores in a single process on another mesh (resharding on load)."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lm.config import ConfigError
from lm.parallel.distributed import initialize, launcher_world_size
from lm.train.metrics import read_metrics
from tests.helpers import write_small_stdlib_corpus

LOW_OPT = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def lm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lm.cli", *args]


def train_args(corpus, prepared, workdir, steps: int, *extra: str) -> list[str]:
    return lm_command(
        "train", "--config", "experiments/configs/tiny.py", "--workdir", str(workdir),
        f"--config.data.sources=['{corpus}']", f"--config.data.prepared_dir={prepared}",
        "--config.data.heldout_fraction=0.1", f"--config.train.steps={steps}",
        "--config.train.warmup_steps=1", "--config.train.schedule=constant",
        "--config.train.eval_every=2", "--config.train.eval_batches=1",
        "--config.train.checkpoint_every=2", *extra)


def env_with(devices: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"{LOW_OPT} --xla_force_host_platform_device_count={devices}",
                JAX_PLATFORMS="cpu")


def losses(workdir) -> list[tuple[int, str, float]]:
    return [(r["step"], r["kind"], r["loss"]) for r in read_metrics(workdir / "metrics.jsonl", kind=None)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    corpus = write_small_stdlib_corpus(root / "corpus", max_bytes=150_000)
    prepared, reference, shared = root / "prepared", root / "reference", root / "two"
    mesh = ("--config.mesh.data=-1", "--config.mesh.fsdp=2")
    one = subprocess.run(train_args(corpus, prepared, reference, 6, *mesh), env=env_with(8),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    address = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen(train_args(corpus, prepared, shared, 4, *mesh, "--coordinator", address,
                                         "--num-processes", "2", "--process-id", str(i)),
                              env=env_with(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    two_losses = losses(shared)
    # the same checkpoint, resumed in one process on another mesh shape
    resumed = subprocess.run(
        train_args(corpus, prepared, shared, 6, "--config.mesh.data=1", "--config.mesh.fsdp=-1"),
        env=env_with(8), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    sample = subprocess.run(lm_command("sample", "--workdir", str(shared), "--max-new-tokens", "8"),
                            env=env_with(1), capture_output=True, text=True, timeout=300)
    return dict(corpus=corpus, prepared=prepared, mesh=mesh,
                reference=losses(reference), two=two_losses, resumed=losses(shared),
                outputs=outputs, resumed_out=resumed.stdout + resumed.stderr, sample=sample)


def test_two_processes_match_one_process(runs):
    ref, two = runs["reference"], runs["two"]
    assert [r[:2] for r in two] == [r[:2] for r in ref if r[0] <= 4]
    np.testing.assert_allclose([r[2] for r in two], [r[2] for r in ref if r[0] <= 4], rtol=1e-5)


def test_only_process_zero_logs(runs):
    (out0, err0), (out1, err1) = runs["outputs"]
    assert "loss_plot" in out0 and "loss_plot" not in out1
    assert "[model]" in out0 and "[model]" not in out1
    assert "loss=" in err0 and "loss=" not in err1  # the progress bar


def test_checkpoint_restores_in_one_process_on_another_mesh(runs):
    assert "resumed from step 4" in runs["resumed_out"]
    ref, resumed = runs["reference"], runs["resumed"]
    assert [r[:2] for r in resumed] == [r[:2] for r in ref]
    np.testing.assert_allclose([r[2] for r in resumed], [r[2] for r in ref], rtol=1e-5)
    assert runs["sample"].returncode == 0, runs["sample"].stderr[-2000:]
    assert "--- sample (step 6) ---" in runs["sample"].stdout


def test_launcher_detection_and_flag_errors():
    assert launcher_world_size({}) == 1
    assert launcher_world_size({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}) == 16
    assert launcher_world_size({"SLURM_NTASKS": "16"}) == 1  # not inside a job
    assert launcher_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launcher_world_size({"TPU_WORKER_HOSTNAMES": "a,b,c,d"}) == 4
    with pytest.raises(ConfigError, match="given together"):
        initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(ConfigError, match="--process-id 2 is not in"):
        initialize("127.0.0.1:1234", 2, 2)
    initialize("127.0.0.1:1234", 1, 0)  # a world of one initialises nothing


def test_a_sigterm_to_one_process_stops_both_after_the_same_step(runs, tmp_path):
    """Preemption may signal one host only: the processes agree (an all-gather of their flags
    after every step), stop after the same step and save its checkpoint together."""
    address = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen(train_args(runs["corpus"], runs["prepared"], tmp_path, 400, *runs["mesh"],
                                         "--config.train.eval_every=1000",
                                         "--config.train.checkpoint_every=1000",
                                         "--coordinator", address, "--num-processes", "2",
                                         "--process-id", str(i)),
                              env=env_with(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.time() + 300
    while time.time() < deadline and all(p.poll() is None for p in procs):
        metrics = tmp_path / "metrics.jsonl"
        if metrics.exists() and len(read_metrics(metrics)) >= 3:
            procs[1].send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [75, 75], outputs[0][1][-3000:]
    step = read_metrics(tmp_path / "metrics.jsonl")[-1]["step"]
    assert 3 <= step < 400
    checkpoint = tmp_path / "checkpoints" / str(step)
    assert outputs[1][1].splitlines()[-1] == (
        f"lm train: stopped by SIGTERM after step {step}; its checkpoint is in {checkpoint}; rerun "
        f"the same command to resume from step {step + 1}")
    assert outputs[0][1].splitlines()[-1].startswith(
        f"lm train: stopped by a signal to another process after step {step};")
    assert checkpoint.is_dir() and (checkpoint / "lm_checksums.json").exists()
