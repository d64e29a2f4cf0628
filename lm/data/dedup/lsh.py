"""LSH banding over all shards' MinHash signatures: the global phase of fuzzy dedup.

Each signature is cut into ``bands`` bands of ``rows`` values (``bands * rows`` must be
the signatures' ``num_perm``); two documents become a candidate pair when all rows of
some band agree, which for shingle-set Jaccard ``s`` happens with probability
``candidate_probability(s) = 1 - (1 - s^rows)^bands``, an S-curve that rises near
``threshold_for(bands, rows) = (1/bands)^(1/rows)``.

In each band, documents with equal band hashes form a bucket; the bucket's first
document (lowest global index) is paired with each other member. With ``threshold``
set, a pair is kept only when its estimated Jaccard (share of equal signature values)
is at least ``threshold``; members that fail are paired with the first of the failed
ones, and so on, so a bucket of unrelated documents is still searched. Kept pairs are
merged with union-find; each cluster keeps its first document in (shard name,
position) order and drops the rest (see ``store`` for the drop list).

Memory: the band hashes (8 bytes x bands per document), the ids, and, with
``threshold``, the signatures of documents that share a bucket with another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lm.data.dedup import store
from lm.data.dedup.minhash import KIND, splitmix64, estimated_jaccard
from lm.data.dedup.unionfind import UnionFind

_ROW_MIX = np.uint64(0xD6E8FEB86659FD93)


def threshold_for(bands: int, rows: int) -> float:
    """The Jaccard similarity near which the S-curve rises: ``(1/bands)^(1/rows)``."""
    return (1.0 / bands) ** (1.0 / rows)


def candidate_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents of shingle Jaccard ``s`` share at least one band:
    ``1 - (1 - s^rows)^bands``."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


def check_banding(num_perm: int, bands: int, rows: int) -> None:
    """Raise ValueError unless ``bands`` and ``rows`` are positive and multiply to ``num_perm``."""
    if not (isinstance(bands, int) and isinstance(rows, int) and bands >= 1 and rows >= 1):
        raise ValueError(f"LSH bands={bands!r}, rows={rows!r}; both must be positive integers")
    if bands * rows != num_perm:
        divisors = [d for d in range(1, num_perm + 1) if num_perm % d == 0]
        raise ValueError(
            f"LSH bands x rows = {bands} x {rows} = {bands * rows}, but the signatures have "
            f"num_perm={num_perm}; choose bands and rows whose product is {num_perm} "
            f"(bands one of {divisors}) or change MinHasher num_perm")


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 hash of each band of each signature: (docs, num_perm) -> (docs, bands)."""
    check_banding(signatures.shape[1], bands, rows)
    cut = signatures.reshape(len(signatures), bands, rows).astype(np.uint64)
    h = np.zeros((len(signatures), bands), dtype=np.uint64)
    for r in range(rows):
        h = splitmix64(h * _ROW_MIX + cut[:, :, r])
    return h


def _buckets(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Documents of one band that share their hash with another, sorted by (bucket, index):
    (global indices, bucket numbers)."""
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    starts = np.ones(len(h), dtype=bool)
    starts[1:] = sorted_h[1:] != sorted_h[:-1]
    bucket = np.cumsum(starts) - 1
    shared = np.bincount(bucket)[bucket] >= 2
    return order[shared], bucket[shared]


def _first_member_pairs(idx: np.ndarray, bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first of bucket, member) pairs for every non-first member, and the members' mask."""
    starts = np.ones(len(idx), dtype=bool)
    starts[1:] = bucket[1:] != bucket[:-1]
    first = idx[starts][np.cumsum(starts) - 1]
    member = ~starts
    return first[member], idx[member], member


def _candidate_signatures(shard_files: Sequence[store.ShardFile], starts: np.ndarray,
                          candidates: np.ndarray) -> np.ndarray:
    """Signature rows of the (sorted) global indices ``candidates``, read shard by shard."""
    rows = []
    for k, sf in enumerate(shard_files):
        local = candidates[(candidates >= starts[k]) & (candidates < starts[k + 1])] - starts[k]
        if local.size:
            rows.append(store.read_shard_file(sf.path, KIND, ["signatures"]).arrays["signatures"][local])
    return np.concatenate(rows)


def cluster_near_duplicates(signature_paths: Sequence[Path], out_path: Path, *, bands: int = 14,
                            rows: int = 8, threshold: float | None = None) -> store.DedupStats:
    """Cluster the documents of all shards' signature files and write the drop list
    (every document but the first of each cluster) to ``out_path`` atomically.

    ``bands`` x ``rows`` must equal the signatures' num_perm (FineWeb: 14 x 8 = 112).
    ``threshold``: None keeps every candidate pair (LSH alone, as FineWeb); a number in
    (0, 1] keeps a pair only when its estimated Jaccard is at least that.
    """
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"LSH threshold={threshold!r}; use None or a Jaccard similarity in (0, 1]")
    entries = store.shard_order(signature_paths, KIND)
    check_banding(entries[0][2]["num_perm"], bands, rows)

    shard_files, hashes = [], []
    for _, path, _ in entries:
        sf = store.read_shard_file(path, KIND, ["signatures"])
        hashes.append(band_hashes(sf.arrays["signatures"], bands, rows))
        shard_files.append(dataclasses.replace(sf, arrays={}))
    h = np.concatenate(hashes)
    starts = np.concatenate(([0], np.cumsum([sf.num_docs for sf in shard_files]))).astype(np.int64)
    buckets = [_buckets(h[:, j]) for j in range(bands)]
    del h

    union_find = UnionFind(int(starts[-1]))
    candidate_pairs = 0
    if threshold is None:
        for idx, bucket in buckets:
            first, other, _ = _first_member_pairs(idx, bucket)
            candidate_pairs += first.size
            union_find.union(first, other)
        return store.write_drops(out_path, shard_files, union_find.parent, candidate_pairs)

    candidates = np.unique(np.concatenate([idx for idx, _ in buckets]))
    sigs = _candidate_signatures(shard_files, starts, candidates) if candidates.size else None
    for idx, bucket in buckets:
        candidate_pairs += _union_verified(union_find, idx, bucket, candidates, sigs, threshold)
    return store.write_drops(out_path, shard_files, union_find.parent, candidate_pairs)


def _union_verified(union_find: UnionFind, idx: np.ndarray, bucket: np.ndarray, candidates: np.ndarray,
                    sigs: np.ndarray, threshold: float) -> int:
    """Merge the pairs of one band whose estimated Jaccard reaches ``threshold``: each
    bucket's first document against the others, then the rejected ones among themselves.
    ``sigs[i]`` is the signature of document ``candidates[i]``. Returns the pairs tried."""
    tried = 0
    while idx.size:
        first, other, member = _first_member_pairs(idx, bucket)
        if not first.size:
            break
        tried += first.size
        accepted = union_find.roots(first) == union_find.roots(other)  # already one cluster
        check = np.flatnonzero(~accepted)
        sim = estimated_jaccard(sigs[np.searchsorted(candidates, first[check])],
                                sigs[np.searchsorted(candidates, other[check])])
        accepted[check] = sim >= threshold
        union_find.union(first[accepted], other[accepted])
        rejected = member.copy()
        rejected[member] = ~accepted
        idx, bucket = idx[rejected], bucket[rejected]
    return tried
