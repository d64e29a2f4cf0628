"""Run pipeline tasks as Ray remote functions (the same tasks and outputs as the local executor).

Uses the Ray instance already started in this process (``ray.init(address=...)``
for a cluster), or starts a local one with `workers` CPUs. Every worker must see
the run directory at the same path (a shared filesystem on a cluster). Ray is an
optional dependency: ``pip install 'ray>=2.40'``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm import tqdm

from lm.config import ConfigError
from lm.data.stop import StopSignals


def run_ray(fn: Callable[..., str], jobs: Sequence[tuple], *, workers: int, desc: str, progress: bool,
            stop: StopSignals) -> None:
    """Run `fn(*job)` for every job as a Ray task; the first failure is raised. After a stop
    signal the tasks not yet started are cancelled and the running ones finish."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("the ray executor needs Ray: pip install 'ray>=2.40' (or use --executor local)") from e
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    pending = [remote.remote(*job) for job in jobs]
    with tqdm(total=len(jobs), desc=f"{desc} (ray)", unit="task", disable=not progress) as bar:
        while pending:
            if stop.received is not None:
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(pending, num_returns=len(pending))
                return
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            try:
                ray.get(done)
            except Exception:
                for ref in pending:
                    ray.cancel(ref)
                raise
            bar.update(len(done))
