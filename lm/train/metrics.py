"""Training metrics to the console (tqdm), ``metrics.jsonl`` and TensorBoard.

``metrics.jsonl`` holds one JSON object per ``MetricsLogger.log`` call:
``{"step": int, "kind": str, "time": unix seconds, <metric>: number, ...}``.
JSON has no NaN or infinity, so non-finite metric values are written as the
strings ``"nan"``, ``"inf"`` and ``"-inf"``; ``read_metrics`` turns them back
into floats. Every line stays valid JSON.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tensorboardX import SummaryWriter
from tqdm import tqdm

from lm.files import atomic_write

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Train metrics the progress bar shows, when present: loss, throughput and MFU
# (a fraction, as lm.train.peak.mfu returns it).
LOSS, TOKENS_PER_S, MFU = "loss", "tokens_per_s", "mfu"

ANOMALY = "anomaly"  # the kind of spike records (lm.train.anomaly)
_RESERVED = ("step", "kind", "time")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _json_value(name: str, value: Any) -> int | float | str:
    """A metric as JSON: ints stay ints, floats are finite or "nan"/"inf"/"-inf"."""
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        x = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metric {name!r} = {value!r} is not a number; log numbers only") from e
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _parse_lines(path: Path) -> list[tuple[bytes, dict]]:
    """(raw line, record) for each line; drops an unparsable final line (a write cut short)."""
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    parsed = []
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            if not isinstance(record.get("step"), int) or not isinstance(record.get("kind"), str):
                raise ValueError('needs an integer "step" and a string "kind"')
        except ValueError as e:
            if number == len(lines):
                break
            raise ValueError(
                f"{path}:{number}: malformed metrics line ({e}); repair or delete that line"
            ) from e
        parsed.append((raw, record))
    return parsed


def read_metrics(path: Path, kind: str | None = "train") -> list[dict]:
    """Records of ``kind`` (all kinds if None) from a metrics.jsonl, in file order.

    A truncated final line left by a crash is skipped; a malformed line
    elsewhere raises ValueError naming the file and line number. The strings
    "nan", "inf" and "-inf" come back as floats.
    """
    records = []
    for _, record in _parse_lines(Path(path)):
        if kind is not None and record["kind"] != kind:
            continue
        records.append(
            {k: _NONFINITE[v] if k != "kind" and isinstance(v, str) and v in _NONFINITE else v
             for k, v in record.items()}
        )
    return records


def _drop_after_step(path: Path, start_step: int, *, rewinding: bool = False) -> None:
    """Atomically rewrite ``path`` keeping the lines with step <= start_step, and the records of
    rollbacks that happened on the way to start_step's state: those to an earlier step, or
    (`rewinding`: the rollback now under way) to start_step itself."""

    def kept(record: dict) -> bool:
        back_to = record.get("rolled_back_to", start_step + 1)
        return record["step"] <= start_step or (
            record["kind"] == ANOMALY and (back_to <= start_step if rewinding else back_to < start_step))

    lines = b"".join(raw + b"\n" for raw, record in _parse_lines(path) if kept(record))
    with atomic_write(path) as f:
        f.write(lines)


def _si(x: float) -> str:
    """Compact number: 1234567 -> '1.23M'."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _fmt(value: int | float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


class MetricsLogger:
    """Log metrics to ``workdir/metrics.jsonl``, TensorBoard and a tqdm progress bar.

    Steps are counted after their update, so the checkpoint of step S holds
    the state logged at step S. Resuming from it (``start_step=S``) drops the
    lines with step > S from an existing metrics.jsonl (left over from a run
    that crashed past its last checkpoint), so every step appears once; a
    fresh run (start_step 0) starts an empty file. TensorBoard events after
    start_step are purged likewise. With
    ``enabled=False`` (non-zero processes of a multi-host run) it does nothing.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self._enabled = enabled
        self._closed = False
        if not enabled:
            return
        if not 0 <= start_step <= total_steps:
            raise ValueError(
                f"need 0 <= start_step <= total_steps; got start_step={start_step}, total_steps={total_steps}"
            )
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / METRICS_FILE
        if self.path.exists():
            _drop_after_step(self.path, start_step)
        self._file = open(self.path, "a", encoding="utf-8")
        self._tensorboard = workdir / TENSORBOARD_DIR if tensorboard else None
        self._writer = self._open_writer(start_step)
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def _open_writer(self, start_step: int) -> SummaryWriter | None:
        if self._tensorboard is None:
            return None
        return SummaryWriter(str(self._tensorboard), purge_step=start_step + 1 if start_step else None)

    def rewind(self, step: int) -> None:
        """Forget what was logged after `step` (a rollback to that step's checkpoint), keeping
        the anomaly records; TensorBoard's later events are purged as on resume."""
        if not self._enabled:
            return
        self._file.close()
        _drop_after_step(self.path, step, rewinding=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if self._writer is not None:
            self._writer.close()
            self._writer = self._open_writer(step)
        self._bar.n = step
        self._bar.refresh()

    def event(self, step: int, kind: str, fields: Mapping[str, Any]) -> None:
        """Record an event (numbers and strings) at ``step``: one JSONL line and one printed line."""
        if not self._enabled:
            return
        values = {name: v if isinstance(v, str) else _json_value(name, v) for name, v in fields.items()}
        record = {"step": int(step), "kind": kind, "time": time.time(), **values}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        tqdm.write(f"{kind} step {step}: " + " ".join(f"{k}={_fmt(v)}" for k, v in values.items()))

    def log(self, step: int, metrics: Mapping[str, float], *, kind: str = "train") -> None:
        """Record ``metrics`` at ``step``: one JSONL line, TensorBoard scalars "<kind>/<name>".

        Train metrics advance the progress bar and update its postfix; other
        kinds (e.g. "eval") print one line above the bar.
        """
        if not self._enabled:
            return
        if self._closed:
            raise RuntimeError(f"MetricsLogger for {self.path} is closed; log before close()")
        clash = [k for k in metrics if k in _RESERVED]
        if clash:
            raise ValueError(f"metric names {clash} are reserved ({_RESERVED}); rename them")
        values = {name: _json_value(name, v) for name, v in metrics.items()}
        record = {"step": int(step), "kind": kind, "time": time.time(), **values}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

        if self._writer is not None:
            for name, v in values.items():
                self._writer.add_scalar(f"{kind}/{name}", _NONFINITE.get(v, v), int(step))

        if kind == "train":
            self._bar.set_postfix_str(self._postfix(values), refresh=False)
            self._bar.update(max(0, int(step) - self._bar.n))
        else:
            shown = " ".join(f"{name}={_fmt(v)}" for name, v in values.items())
            tqdm.write(f"{kind} step {step}: {shown}")

    @staticmethod
    def _postfix(values: Mapping[str, int | float | str]) -> str:
        parts = []
        if LOSS in values:
            parts.append(f"loss={_fmt(values[LOSS])}")
        if isinstance(values.get(TOKENS_PER_S), (int, float)):
            parts.append(f"tok/s={_si(values[TOKENS_PER_S])}")
        if isinstance(values.get(MFU), (int, float)):
            parts.append(f"mfu={100 * values[MFU]:.1f}%")
        return " ".join(parts)

    def close(self) -> None:
        """Flush and close the JSONL file, TensorBoard writer and progress bar (idempotent)."""
        if not self._enabled or self._closed:
            return
        self._closed = True
        self._bar.close()
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
