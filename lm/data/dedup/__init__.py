"""Exact, fuzzy (MinHash LSH) and line-level deduplication that works across shards.

Every method runs in phases, so per-shard work is parallel and only a small global
step sees the whole corpus:

* exact: ``exact_key`` per document -> ``write_exact_keys`` per shard ->
  ``find_exact_duplicates`` over all key files (first seen wins) -> drop list;
* fuzzy: ``MinHasher.signature`` per document -> ``write_signatures`` per shard ->
  ``cluster_near_duplicates`` over all signature files (LSH bands, optional
  verification, union-find, first of each cluster kept) -> drop list;
* apply: ``load_drops(drop_list, shard)`` gives the ids to drop from one shard, each
  with its cluster and the document kept in its place;
* lines: ``LineCounter`` per shard -> ``merge_line_counts`` -> ``RepeatedLineRemover``
  modifier on every document.

"First" is (shard name, position in shard) order. All hashing is fixed arithmetic
(BLAKE2b, SplitMix64), so results are the same in every process and on every machine.
"""

from lm.data.dedup.exact import exact_key, find_exact_duplicates, normalize, write_exact_keys
from lm.data.dedup.lines import LineCounter, RepeatedLineRemover, merge_line_counts
from lm.data.dedup.lsh import candidate_probability, check_banding, cluster_near_duplicates, threshold_for
from lm.data.dedup.minhash import MinHasher, estimated_jaccard, write_signatures
from lm.data.dedup.store import DedupStats, DroppedDoc, load_drops

__all__ = [
    "DedupStats", "DroppedDoc", "LineCounter", "MinHasher", "RepeatedLineRemover", "candidate_probability",
    "check_banding", "cluster_near_duplicates", "estimated_jaccard", "exact_key", "find_exact_duplicates",
    "load_drops", "merge_line_counts", "normalize", "threshold_for", "write_exact_keys", "write_signatures",
]
