"""Packed fixed-length training rows from token shards, served by a grain pipeline.

Each document with tokens t1..tn becomes the pair ``inputs = [BOS, t1..tn]``,
``targets = [t1..tn, EOS]`` (n + 1 tokens). In epoch e the documents are
permuted with a seed derived from (seed, e), their pairs are concatenated into
one stream, and row r of the epoch is stream positions ``[r*L, (r+1)*L)``.
Every document piece inside a row is its own segment: ``segment_ids`` count
1, 2, 3... within the row and ``positions`` restart at 0, also for a document
continued from the previous row. Only the last row of an epoch is padded
(token 0, segment 0, position 0). All epochs have the same number of rows,
`rows_per_epoch`, and the rows of an epoch are visited in a second seeded
permutation. Row i of the whole run is therefore a pure function of i, so the
only iterator state is a position.

Batches are dicts of int32 numpy arrays [per_host_batch, seq_len] with keys
``inputs``, ``targets``, ``segment_ids``, ``positions``. Global row i belongs to
host ``i % process_count``; global batch b is rows ``[b*G, (b+1)*G)``.

The iterator returned by `train_iterator` is grain's own: ``get_state()`` is a
JSON-serialisable dict ``{"next_index": <batches already returned>}`` and
``set_state(state)`` resumes exactly there. The state does not record the
pipeline's arguments: resume with the same shards, seq_len, batch size, seed
and process layout.
"""

from __future__ import annotations

import functools
import math

import grain
import jax
import numpy as np

from lm.data.read import DataError
from lm.data.shards import TokenShards

FIELDS = ("inputs", "targets", "segment_ids", "positions")
# Threads, not processes: building a row is cheap numpy slicing of memory maps.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def rows_per_epoch(shards: TokenShards, seq_len: int) -> int:
    """Rows of length `seq_len` that one epoch of (inputs, targets) pairs fills."""
    return math.ceil((shards.num_tokens + shards.num_docs) / seq_len)


class PackedRows:
    """grain random-access source: element i is packed row i (a dict of int32 [seq_len])
    over `num_epochs` epochs. With ``seed=None`` documents and rows stay in order."""

    def __init__(
        self, shards: TokenShards, *, seq_len: int, bos_id: int, eos_id: int, seed: int | None, num_epochs: int
    ):
        for name, token in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= token < shards.vocab_size:
                raise ValueError(f"{name}={token} is not a token id in [0, {shards.vocab_size}); check the tokenizer")
        if seq_len < 1 or num_epochs < 1:
            raise ValueError(f"seq_len={seq_len} and num_epochs={num_epochs} must be >= 1")
        if seed is not None and seed < 0:
            raise ValueError(f"seed={seed} must be >= 0")
        self._shards = shards
        self._seq_len = seq_len
        self._bos_id = bos_id
        self._eos_id = eos_id
        self._seed = seed
        self._num_epochs = num_epochs
        self._pair_lengths = shards.doc_lengths + 1
        self._rows_per_epoch = rows_per_epoch(shards, seq_len)
        # Two epochs, so that threads working on both sides of an epoch boundary do not thrash.
        self._plan = functools.lru_cache(maxsize=2)(self._epoch_plan)

    @property
    def rows_per_epoch(self) -> int:
        return self._rows_per_epoch

    def __len__(self) -> int:
        return self._num_epochs * self._rows_per_epoch

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range [0, {len(self)})")
        epoch, k = divmod(int(i), self._rows_per_epoch)
        doc_order, pair_starts, row_order = self._plan(epoch)
        return self._row(doc_order, pair_starts, int(row_order[k]))

    def __repr__(self) -> str:
        return (
            f"PackedRows(num_docs={self._shards.num_docs}, seq_len={self._seq_len}, "
            f"seed={self._seed}, num_epochs={self._num_epochs})"
        )

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Document order, start of each pair in the epoch's stream (plus the total),
        and row visiting order of `epoch`."""
        num_docs = self._shards.num_docs
        if self._seed is None:
            doc_order, row_order = np.arange(num_docs), np.arange(self._rows_per_epoch)
        else:
            rng = np.random.default_rng([self._seed, epoch])
            doc_order = rng.permutation(num_docs)
            row_order = rng.permutation(self._rows_per_epoch)
        pair_starts = np.zeros(num_docs + 1, np.int64)
        np.cumsum(self._pair_lengths[doc_order], out=pair_starts[1:])
        return doc_order, pair_starts, row_order

    def _row(self, doc_order: np.ndarray, pair_starts: np.ndarray, row: int) -> dict[str, np.ndarray]:
        """Stream positions [row*L, (row+1)*L) of the epoch, one segment per document piece."""
        out = {name: np.zeros(self._seq_len, np.int32) for name in FIELDS}
        row_start = row * self._seq_len
        row_len = min(self._seq_len, int(pair_starts[-1]) - row_start)
        j = int(np.searchsorted(pair_starts, row_start, side="right")) - 1
        column = 0
        segment = 0
        while column < row_len:
            doc = int(doc_order[j])
            tokens = self._shards.doc(doc)
            # This piece is [a, b) of the pair inputs=[BOS]+tokens, targets=tokens+[EOS].
            a = row_start + column - int(pair_starts[j])
            b = min(a + row_len - column, len(tokens) + 1)
            n = b - a
            inputs = out["inputs"][column : column + n]
            if a == 0:
                inputs[0] = self._bos_id
                inputs[1:] = tokens[: b - 1]
            else:
                inputs[:] = tokens[a - 1 : b - 1]
            targets = out["targets"][column : column + n]
            from_tokens = min(b, len(tokens)) - a
            targets[:from_tokens] = tokens[a : a + from_tokens]
            if b == len(tokens) + 1:
                targets[-1] = self._eos_id
            segment += 1
            out["segment_ids"][column : column + n] = segment
            out["positions"][column : column + n] = np.arange(n)
            column += n
            j += 1
        return out


def train_iterator(
    shards: TokenShards,
    *,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    bos_id: int,
    eos_id: int,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int = 1000,
) -> grain.DatasetIterator:
    """Shuffled packed batches for this host, prefetched by threads; checkpoint with
    ``get_state()`` / ``set_state()``. Ends after the last full global batch of
    `num_epochs` epochs. Process index/count default to JAX's."""
    process_index, process_count = host_layout(global_batch_size, process_index, process_count)
    rows = PackedRows(shards, seq_len=seq_len, bos_id=bos_id, eos_id=eos_id, seed=seed, num_epochs=num_epochs)
    num_batches = len(rows) // global_batch_size
    if num_batches == 0:
        raise DataError(
            f"{num_epochs} epochs of {rows.rows_per_epoch} rows do not fill one global batch of "
            f"{global_batch_size}; raise num_epochs or add data"
        )
    batches = host_batches(rows, global_batch_size, num_batches, process_index, process_count)
    return iter(batches.to_iter_dataset(READ_OPTIONS))


EVAL_SEED = 0


def eval_batches(
    shards: TokenShards,
    *,
    seq_len: int,
    batch_size: int,
    num_batches: int,
    bos_id: int,
    eos_id: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """`num_batches` global batches of `batch_size` rows, this host's part of each.

    Documents and rows are shuffled with the fixed `EVAL_SEED`, not the run's seed, so
    the rows sample the whole held-out set (not its first documents) and every run of
    the same data evaluates the same tokens. Raises DataError if the held-out shards have
    fewer rows than ``num_batches * batch_size``."""
    process_index, process_count = host_layout(batch_size, process_index, process_count)
    rows = PackedRows(shards, seq_len=seq_len, bos_id=bos_id, eos_id=eos_id, seed=EVAL_SEED,
                      num_epochs=1)
    needed = num_batches * batch_size
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches} must be >= 1")
    if len(rows) < needed:
        raise DataError(
            f"held-out set has {len(rows)} rows of seq_len {seq_len}, but {num_batches} batches of "
            f"{batch_size} need {needed}; use num_batches <= {len(rows) // batch_size} or more held-out data"
        )
    batches = host_batches(rows, batch_size, num_batches, process_index, process_count)
    return [batches[b] for b in range(len(batches))]


def host_layout(global_batch_size: int, process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(process_index, process_count), defaulting to JAX's, checked against the batch size."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} must be a positive multiple of process_count={process_count}"
        )
    return process_index, process_count


def host_batches(
    rows: PackedRows, global_batch_size: int, num_batches: int, process_index: int, process_count: int
) -> grain.MapDataset:
    """This host's share of the first `num_batches` global batches of `rows`."""
    dataset = grain.MapDataset.source(rows).slice(slice(0, num_batches * global_batch_size))
    dataset = dataset.slice(slice(process_index, None, process_count))
    return dataset.batch(global_batch_size // process_count, drop_remainder=True)
