"""A fixed set of unique training tokens, for data-constrained runs (`data.unique_tokens`).

`UniqueTokens` is a view of the train split's token shards holding exactly `unique_tokens`
stream tokens: the documents of a permutation seeded by `data.seed` (not by the run's
other settings), taken in that order until their (inputs, targets) pairs, n + 1 tokens for
a document of n, reach `unique_tokens`; the last one is cut short so the total is exact.
The loader (`lm.data.loader.PackedRows`) then serves this set epoch after epoch with the
documents reshuffled every epoch, so a run of D tokens sees the set D / unique_tokens
times. With `unique_tokens` a multiple of seq_len every epoch is ceil(U / seq_len) =
U / seq_len rows, none padded. The subset for a smaller U is a prefix of the one for a
larger U (same seed), as Muennighoff et al. (2023) took nested subsets. The held-out split
is separate (split by content, `lm.data.heldout`), so it stays disjoint from every subset.
"""

from __future__ import annotations

import numpy as np

from lm.data.read import DataError
from lm.data.shards import TokenShards

_SALT = 0x5EED  # keeps the subset's permutation apart from the loader's epoch permutations


class UniqueTokens:
    """The first `unique_tokens` stream tokens of `shards` in a seeded document order; the
    interface `PackedRows` reads (vocab_size, tokenizer_fingerprint, doc_lengths, num_docs,
    num_tokens, doc)."""

    def __init__(self, shards: TokenShards, unique_tokens: int, seed: int):
        available = int(shards.num_tokens + shards.num_docs)
        if not 0 < unique_tokens <= available:
            raise DataError(f"data.unique_tokens={unique_tokens} must lie in [1, {available:,}], "
                            "the stream tokens (tokens plus one per document) of the train split")
        order = np.random.default_rng([seed, _SALT]).permutation(shards.num_docs)
        pairs = np.cumsum(shards.doc_lengths[order] + 1)
        count = int(np.searchsorted(pairs, unique_tokens)) + 1  # documents reaching the total
        self._docs = order[:count]
        self.doc_lengths = shards.doc_lengths[self._docs].copy()
        self.doc_lengths[-1] -= int(pairs[count - 1]) - unique_tokens  # cut the last one short
        self._shards = shards
        self.vocab_size = shards.vocab_size
        self.tokenizer_fingerprint = shards.tokenizer_fingerprint
        self.num_docs = count
        self.num_tokens = int(self.doc_lengths.sum())

    def doc(self, i: int) -> np.ndarray:
        """Tokens of the subset's document `i` (the last one cut to its length here)."""
        if not 0 <= i < self.num_docs:
            raise IndexError(f"document {i} out of range [0, {self.num_docs})")
        return self._shards.doc(int(self._docs[i]))[: int(self.doc_lengths[i])]


def train_shards(shards: TokenShards, unique_tokens: int, seed: int) -> TokenShards | UniqueTokens:
    """What the run trains on: `shards`, or with `unique_tokens` > 0 its subset of that size."""
    return UniqueTokens(shards, unique_tokens, seed) if unique_tokens else shards
