"""Mixtures of token-shard groups for training: weights, temperature, epochs, curriculum stages.

A mixture draws packed rows (`lm.data.loader.PackedRows`) from several token-shard
directories (a prepare run's ``tokens/<group>/``). A recipe's ``mixture`` is one
stage or a list of them (``{"stages": [...]}``); a stage gives exactly one rule:

* ``{"weights": {"web": 0.7, "books": 0.3}}``: p_i proportional to the weight;
* ``{"temperature": T}``: p_i proportional to n_i ** (1 / T), n_i the group's tokens
  (T = 1: as in the data; larger T flattens towards uniform);
* ``{"epochs": {"web": 1, "books": 3}}``: p_i proportional to n_i * e_i (a group
  seen e_i times as often as its size says: upsampling; e_i < 1 subsamples);

plus ``"until"`` on every stage but the last: an optimizer step (an integer) or a
fraction of the run in (0, 1). ``"max_epochs": {"books": 4}`` (top level) refuses a
mixture that would repeat a group more often than that.

Rows are assigned to groups in blocks of `BLOCK_ROWS`: block b of stage k draws its
per-group counts from a multinomial and shuffles them, both seeded by (seed, k, b).
A group's rows are consumed in order across blocks and stages, so row i of the run
is a pure function of i: the iterator state is a position and resumes exactly.
Blocks are sized by the stage, never cut at the end of the run, so the rows do not
depend on the run's length: a run continued to more steps reads the same rows first
(unless a stage ends at a fraction of the run, which moves with the length).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grain
import numpy as np

from lm.data.loader import READ_OPTIONS, PackedRows, host_batches, host_layout
from lm.data.shards import TokenShards
from lm.data.tokenizer import Tokenizer

BLOCK_ROWS = 1024
RULES = ("weights", "temperature", "epochs")


@dataclass(frozen=True)
class Stage:
    rule: str  # one of RULES
    value: float | dict  # the temperature, or weights / epochs per group
    until: float | None  # an optimizer step (>= 1), a fraction of the run in (0, 1), or None (the end)


@dataclass(frozen=True)
class MixtureSpec:
    stages: tuple[Stage, ...]
    max_epochs: dict

    @classmethod
    def from_dict(cls, raw: Mapping) -> MixtureSpec:
        """Parse and check a recipe's ``mixture``; ValueError names the bad key."""
        raw = dict(raw)
        max_epochs = raw.pop("max_epochs", {})
        _check_positive_map(max_epochs, "max_epochs")
        if "stages" in raw:
            stage_dicts = raw.pop("stages")
            if raw:
                raise ValueError(f"unknown keys {sorted(raw)} beside 'stages'; put each rule inside its stage")
        else:
            stage_dicts = [raw]
        if not isinstance(stage_dicts, list) or not stage_dicts:
            raise ValueError("'stages' must be a non-empty list of {'until': ..., <rule>: ...} dicts")
        stages = [_stage(dict(s), f"stages[{i}]" if len(stage_dicts) > 1 else "mixture", last=i == len(stage_dicts) - 1)
                  for i, s in enumerate(stage_dicts)]
        untils = [s.until for s in stages[:-1]]
        if any(b <= a and (a < 1) == (b < 1) for a, b in zip(untils, untils[1:])):
            raise ValueError(f"stage 'until' values {untils} must increase")
        return cls(tuple(stages), dict(max_epochs))


def _stage(raw: dict, where: str, last: bool) -> Stage:
    until = raw.pop("until", None)
    rules = [r for r in RULES if r in raw]
    unknown = sorted(set(raw) - set(RULES))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a stage has 'until' and one of {RULES}")
    if len(rules) != 1:
        raise ValueError(f"{where}: give exactly one of {RULES}, got {rules or 'none'}")
    rule = rules[0]
    value = raw[rule]
    if rule == "temperature":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{where}.temperature: {value!r} must be a number > 0")
    else:
        _check_positive_map(value, f"{where}.{rule}", allow_zero=True)
    if last and until is not None:
        raise ValueError(f"{where}: the last stage runs to the end; remove its 'until'")
    if not last and (isinstance(until, bool) or not isinstance(until, (int, float)) or until <= 0
                     or (isinstance(until, float) and until >= 1 and not until.is_integer())):
        raise ValueError(f"{where}.until: {until!r} must be a step (integer >= 1) or a fraction in (0, 1)")
    return Stage(rule, value, until)


def _check_positive_map(value, where: str, allow_zero: bool = False) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict of group name -> number, got {value!r}")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"{where}[{k!r}] = {v!r} must be a number {'>=' if allow_zero else '>'} 0")
    if allow_zero and value and not any(v > 0 for v in value.values()):
        raise ValueError(f"{where}: at least one group needs a weight > 0")


def stage_probabilities(stage: Stage, tokens: Mapping[str, int]) -> np.ndarray:
    """Sampling probability of each group (in `tokens` order) under `stage`."""
    names = list(tokens)
    n = np.array([tokens[g] for g in names], dtype=np.float64)
    if stage.rule == "temperature":
        p = n ** (1.0 / stage.value)
    else:
        unknown = sorted(set(stage.value) - set(names))
        if unknown:
            raise ValueError(f"mixture names groups {unknown} that have no token shards (groups: {names})")
        factor = np.array([stage.value.get(g, 0.0) for g in names], dtype=np.float64)
        p = factor if stage.rule == "weights" else n * factor
    if p.sum() <= 0:
        raise ValueError(f"mixture stage {stage} gives every group probability 0 (tokens: {dict(tokens)})")
    return p / p.sum()


class MixtureRows:
    """grain random-access source: row i of a mixture run of `total_rows` rows."""

    def __init__(self, sources: Mapping[str, TokenShards], spec: MixtureSpec, *, seq_len: int, bos_id: int,
                 eos_id: int, seed: int, total_rows: int, rows_per_step: int, num_steps: int):
        self.names = list(sources)
        self._seed = seed
        tokens = {g: s.num_tokens for g, s in sources.items()}
        if total_rows < 1:
            raise ValueError(f"total_rows={total_rows} must be >= 1")
        bounds = [_until_rows(st.until, rows_per_step, num_steps, total_rows) for st in spec.stages]
        if any(b <= a for a, b in zip(bounds, bounds[1:-1])):
            raise ValueError(f"mixture stages end at rows {bounds[:-1]} of {num_steps} steps x {rows_per_step}; "
                             "their 'until' values must increase")
        self._probs = [stage_probabilities(st, tokens) for st in spec.stages]
        # The last stage has no end; blocks past the run's last row are not planned.
        stage_ends = bounds[:-1] + [math.inf]
        self._blocks = [(k, j, start, min(start + BLOCK_ROWS, end))
                        for k, (begin, end) in enumerate(zip([0] + bounds[:-1], stage_ends))
                        for j, start in enumerate(range(begin, min(end, total_rows), BLOCK_ROWS))]
        self._block_starts = np.array([b[2] for b in self._blocks], dtype=np.int64)
        counts = np.array([self._block_plan(i)[0] for i in range(len(self._blocks))], dtype=np.int64).reshape(
            len(self._blocks), len(self.names))
        self._before = np.concatenate([np.zeros((1, len(self.names)), np.int64), np.cumsum(counts, axis=0)])
        last = len(self._blocks) - 1
        in_run = self._block_order(last)[0][: total_rows - self._blocks[last][2]]
        self._needed = self._before[last] + np.bincount(in_run, minlength=len(self.names))  # rows per group
        self._rows = {}
        for i, g in enumerate(self.names):
            probe = PackedRows(sources[g], seq_len=seq_len, bos_id=bos_id, eos_id=eos_id, seed=0, num_epochs=1)
            epochs = self._needed[i] / probe.rows_per_epoch
            if epochs > spec.max_epochs.get(g, math.inf):
                raise ValueError(f"group {g!r} would be read {epochs:.2f} times but max_epochs[{g!r}] is "
                                 f"{spec.max_epochs[g]}; lower its weight, shorten the run or raise max_epochs")
            self._rows[g] = PackedRows(sources[g], seq_len=seq_len, bos_id=bos_id, eos_id=eos_id,
                                       seed=_group_seed(seed, g), num_epochs=max(1, math.ceil(epochs)))
        self._total_rows = total_rows
        self._order = functools.lru_cache(maxsize=4)(self._block_order)

    def __len__(self) -> int:
        return self._total_rows

    def rows_per_group(self) -> dict[str, int]:
        """How many rows of the run come from each group."""
        return {g: int(n) for g, n in zip(self.names, self._needed)}

    def group_of(self, i: int) -> str:
        block, pos = self._locate(i)
        return self.names[int(self._order(block)[0][pos])]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        block, pos = self._locate(i)
        order, rank = self._order(block)
        g = int(order[pos])
        return self._rows[self.names[g]][int(self._before[block, g] + rank[pos])]

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self._total_rows:
            raise IndexError(f"row {i} out of range [0, {self._total_rows})")
        block = int(np.searchsorted(self._block_starts, i, side="right")) - 1
        return block, int(i - self._block_starts[block])

    def _block_plan(self, block: int) -> tuple[np.ndarray, np.random.Generator]:
        k, j, start, end = self._blocks[block]
        rng = np.random.default_rng([self._seed, k, j])
        return rng.multinomial(end - start, self._probs[k]), rng

    def _block_order(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Group of each row of the block, and each row's rank among its group's rows there."""
        counts, rng = self._block_plan(block)
        order = rng.permutation(np.repeat(np.arange(len(self.names)), counts))
        rank = np.empty_like(order)
        by_group = np.argsort(order, kind="stable")
        rank[by_group] = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return order, rank


def _until_rows(until: float | None, rows_per_step: int, num_steps: int, total_rows: int) -> int:
    if until is None:
        return total_rows
    step = until if until >= 1 else round(until * num_steps)
    return int(step) * rows_per_step


def _group_seed(seed: int, group: str) -> int:
    return int(np.random.default_rng([seed, *group.encode("utf-8")]).integers(2**31))


def mixture_iterator(token_dirs: Mapping[str, Path], spec: MixtureSpec, *, seq_len: int, global_batch_size: int,
                     num_steps: int, seed: int, bos_id: int, eos_id: int, process_index: int | None = None,
                     process_count: int | None = None) -> grain.DatasetIterator:
    """`num_steps` global batches of mixed packed rows, this host's share, prefetched; checkpoint
    with ``get_state()`` / ``set_state()`` as `lm.data.loader.train_iterator`."""
    process_index, process_count = host_layout(global_batch_size, process_index, process_count)
    sources = {g: TokenShards(Path(d)) for g, d in sorted(token_dirs.items())}
    rows = MixtureRows(sources, spec, seq_len=seq_len, bos_id=bos_id, eos_id=eos_id, seed=seed,
                       total_rows=num_steps * global_batch_size, rows_per_step=global_batch_size, num_steps=num_steps)
    batches = host_batches(rows, global_batch_size, num_steps, process_index, process_count)
    return iter(batches.to_iter_dataset(READ_OPTIONS))


def prepared_mixture(run_dir: Path, **kwargs) -> grain.DatasetIterator:
    """`mixture_iterator` over a prepare run's ``tokens/<group>/`` with its recipe's mixture and
    its tokenizer's BOS/EOS; `kwargs` are mixture_iterator's seq_len, global_batch_size,
    num_steps, seed (and process layout)."""
    run_dir = Path(run_dir)
    mixture = json.loads((run_dir / "recipe.json").read_text("utf-8"))["mixture"]
    if mixture is None:
        raise ValueError(f"{run_dir / 'recipe.json'} has no mixture; add one to the recipe")
    tokenizer = Tokenizer.load(run_dir / "tokenizer" / "tokenizer.model")
    token_dirs = {d.name: d for d in sorted((run_dir / "tokens").iterdir()) if d.is_dir()}
    return mixture_iterator(token_dirs, MixtureSpec.from_dict(mixture), bos_id=tokenizer.bos_id,
                            eos_id=tokenizer.eos_id, **kwargs)
