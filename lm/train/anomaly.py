"""Loss and gradient-norm spikes, judged against running robust statistics.

A step's loss (or gradient norm) is a spike when it exceeds

    limit = median + threshold * max(1.4826 * MAD, rel_floor * |median|)

over the last `window` accepted steps (MAD: the median absolute deviation;
1.4826 * MAD estimates the standard deviation of normal noise, and the floor
keeps a very smooth curve from flagging ordinary wobbles). Nothing is judged
until `min_history` steps are in the window, and spikes never enter it.

What a spike does is `train.spike_action`:

- "none": not checked;
- "log": recorded, training goes on with the update applied;
- "skip": the step's update is not applied (the limits go into the jitted
  step, which keeps the old parameters and optimizer state, as for a
  non-finite loss);
- "rollback": PaLM's recipe. The state goes back to the newest checkpoint,
  and the data stream skips every batch from that checkpoint's position
  through the spike's batch plus `train.rollback_skip_batches` more.

Every spike is a `kind: "anomaly"` record in metrics.jsonl and a line of the
summary `lm train` prints at the end. The window travels in the checkpoints,
so a resumed run judges steps exactly as an uninterrupted one does.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any

import numpy as np

METRICS = ("loss", "grad_norm")
MAD_TO_STD = 1.4826


@dataclasses.dataclass(frozen=True)
class Spike:
    """One metric of one step over its limit."""

    step: int
    metric: str
    value: float
    median: float
    limit: float

    def describe(self) -> str:
        return (f"{self.metric} spike at step {self.step}: {self.value:.4g} against a running median "
                f"of {self.median:.4g} (limit {self.limit:.4g})")


class SpikeDetector:
    """Running medians and MADs of the watched metrics over the last `window` accepted steps."""

    def __init__(self, *, window: int, threshold: float, min_history: int, rel_floor: float,
                 metrics: tuple[str, ...] = METRICS):
        self.window, self.threshold = window, threshold
        self.min_history, self.rel_floor = min_history, rel_floor
        self.history = {m: collections.deque(maxlen=window) for m in metrics}

    def limits(self) -> dict[str, float]:
        """Each metric's current limit (infinite until `min_history` steps are in the window)."""
        out = {}
        for metric, values in self.history.items():
            if len(values) < self.min_history:
                out[metric] = math.inf
                continue
            median, scale = _robust(values)
            out[metric] = median + self.threshold * max(MAD_TO_STD * scale,
                                                        self.rel_floor * abs(median))
        return out

    def check(self, step: int, values: dict[str, float],
              limits: dict[str, float] | None = None) -> list[Spike]:
        """The spikes among `values` (against `limits`, by default the current ones). A step
        with none enters the window; a spiking step does not."""
        limits = self.limits() if limits is None else limits
        # compared in float32, as the jitted step compares them under "skip"
        spikes = [Spike(step, m, float(values[m]), _robust(self.history[m])[0], limits[m])
                  for m in self.history if np.float32(values[m]) > np.float32(limits[m])]
        if not spikes and all(math.isfinite(float(values[m])) for m in self.history):
            for metric, values_ in self.history.items():
                values_.append(float(values[metric]))
        return spikes

    def state(self) -> dict[str, list[float]]:
        """The window, as JSON (saved with each checkpoint's data state)."""
        return {metric: list(values) for metric, values in self.history.items()}

    def set_state(self, state: dict[str, list[float]] | None) -> None:
        for metric, values in self.history.items():
            values.clear()
            values.extend((state or {}).get(metric, []))


def _robust(values: Any) -> tuple[float, float]:
    """(median, MAD) of `values`; (nan, nan) when empty."""
    if not len(values):
        return math.nan, math.nan
    array = np.asarray(values, dtype=np.float64)
    median = float(np.median(array))
    return median, float(np.median(np.abs(array - median)))


def detector_from_config(t: Any) -> SpikeDetector | None:
    """The detector `train.spike_*` asks for, or None when `train.spike_action` is "none"."""
    if t.spike_action == "none":
        return None
    return SpikeDetector(window=t.spike_window, threshold=t.spike_threshold,
                         min_history=t.spike_min_history, rel_floor=t.spike_rel_floor)


def plant_bad_batch(batch: dict[str, np.ndarray], vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """The test hook `train.plant_bad_batch_at`: the batch with uniformly random targets
    wherever it carries loss, the way a shard of garbage text looks to the model."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(batch["targets"])
    noise = rng.integers(0, vocab_size, size=targets.shape, dtype=targets.dtype)
    return {**batch, "targets": np.where(np.asarray(batch["segment_ids"]) > 0, noise, targets)}
