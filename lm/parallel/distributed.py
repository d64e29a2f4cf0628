"""Joining a multi-process (multi-host) run with `jax.distributed.initialize`.

One process per host (or per GPU group) runs the same `lm train` command. The
processes find each other through a coordinator, given explicitly
(`--coordinator host:port --num-processes N --process-id i`) or detected by jax
from the launcher's environment: SLURM (`srun`, more than one task), Open MPI
(`mpirun`), and multi-host TPU VMs. A lone process initialises nothing.

After this, `jax.devices()` lists every process's devices and one mesh spans them
all; each process feeds its own rows of the batch (lm.data.loader slices by
`jax.process_index()`), orbax writes checkpoints collectively, and only process 0
writes logs, metrics and plots. On CPU the collectives go over gloo.
"""

from __future__ import annotations

import os

import jax

from lm.config import ConfigError


def launcher_world_size(env: dict[str, str] | None = None) -> int:
    """The number of processes a cluster launcher started (1 when there is none)."""
    env = os.environ if env is None else env
    for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if key in env and (key != "SLURM_NTASKS" or "SLURM_JOB_ID" in env):
            return int(env[key])
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) or 1


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join the run's other processes, if there are any; see the module docstring."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ConfigError("--coordinator, --num-processes and --process-id are given together "
                          "(or none of them, to detect SLURM, MPI or TPU launchers)")
    if all(given):
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"--process-id {process_id} is not in [0, --num-processes "
                              f"{num_processes})")
        if num_processes == 1:
            return
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif launcher_world_size() > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()  # jax reads the coordinator from the launcher's environment


def is_main_process() -> bool:
    """True on the process that writes logs, metrics and plots."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
