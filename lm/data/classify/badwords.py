"""The bad-word-list baseline: score a text by how many listed words it contains.

C4 (Raffel et al. 2020) drops any page holding a word of the LDNOOBW list;
this scorer counts the list entries found, so `score >= 1` is C4's rule and
the count gives the baseline a ranking for ROC-AUC. English-style lists match
whole words or phrases (case-insensitive); Chinese-style lists (`whole_word=False`)
match substrings, since Chinese has no spaces between words.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lm.data.read import DataError


class BadWordScorer:
    """Counts the distinct entries of a word list that occur in a text."""

    def __init__(self, words_path: str | Path, whole_word: bool = True):
        path = Path(words_path)
        try:
            words = {line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines()}
        except FileNotFoundError:
            raise DataError(f"{path}: no such word list (one word or phrase per line)") from None
        words.discard("")
        if not words:
            raise DataError(f"{path}: the word list is empty")
        alternation = "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))
        self.pattern = re.compile(f"(?<!\\w)(?:{alternation})(?!\\w)" if whole_word else alternation)
        self.n_words = len(words)

    def __call__(self, text: str) -> int:
        """The number of distinct list entries in `text` (non-overlapping, longest first)."""
        return len(set(self.pattern.findall(text.lower())))

    def score_many(self, texts: list[str]) -> np.ndarray:
        """`self(text)` for every text, as a float64 array."""
        return np.array([self(t) for t in texts], dtype=np.float64)
