"""The training loop's view of the data: batches by position, with ranges skipped.

A run trains on the data stream's batches in order; `position` counts the
batches taken from the stream, trained on or skipped. Positions differ from
steps once anything was skipped: `train.skip_batches` ranges (PaLM-style
manual skipping, or replaying a run that rolled back) and the ranges a spike
rollback skips (lm.train.anomaly). The position travels in the checkpoint's
data state beside the iterator's own state.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from lm.train.anomaly import plant_bad_batch


class BatchStream:
    """Batches of `iterator` by position, leaving out `skip` ranges [start, end)."""

    def __init__(self, iterator: Iterator[dict] | Any, skip: list[tuple[int, int]] = (), *,
                 plant_at: int = 0, vocab_size: int = 0, seed: int = 0):
        self.iterator, self.skip = iterator, list(skip)
        self.position = 0  # of the next batch the stream gives
        self.plant_at, self.vocab_size, self.seed = plant_at, vocab_size, seed

    def next(self) -> tuple[int, dict[str, np.ndarray]]:
        """(position, batch) of the next batch outside the skipped ranges."""
        self.skip_to(self._first_unskipped(self.position))
        position, batch = self.position, next(self.iterator)
        self.position += 1
        if self.plant_at and position == self.plant_at - 1:  # the batch step plant_at trains on
            batch = plant_bad_batch(batch, self.vocab_size, self.seed + position)
        return position, batch

    def skip_to(self, position: int) -> None:
        """Read and drop batches until the next one is at `position`."""
        while self.position < position:
            next(self.iterator)
            self.position += 1

    def _first_unskipped(self, position: int) -> int:
        for start, end in self.skip:
            if start <= position < end:
                position = end
        return position

    def state(self) -> dict[str, Any]:
        """The checkpointable state: the iterator's and the position."""
        return {"iterator": self.iterator.get_state(), "position": self.position}

    def set_state(self, state: dict[str, Any], step: int) -> None:
        """Continue from `state` (checkpoints written before positions existed hold none: their
        position is their step, nothing having been skipped)."""
        self.iterator.set_state(state["iterator"])
        self.position = int(state.get("position", step))
