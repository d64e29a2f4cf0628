"""Gopher's heuristic filters: `GopherQuality` and `GopherRepetition`.

Defaults are the published thresholds of Rae et al. 2021 ("Scaling
Language Models: Methods, Analysis & Insights from Training Gopher"),
appendix A.1.1 and table A1; every one can be overridden by keyword.

Chinese, Japanese and Korean (`text_stats.uses_chars`) are measured in
characters rather than whitespace words. What changes for them:

* word count: `min_cjk_chars` / `max_cjk_chars` (default 100 and 200,000:
  a Chinese word averages about 1.5-2 characters, so 50 words is roughly
  100 characters);
* mean word length: not applied (every unit is one character long);
* stop words: the list for the document's language in `stop_words`; a
  language without a list (by default anything but en, zh, ja, ko) skips
  the rule, because Gopher's list is English;
* repetition n-grams: the same n and limits over characters (a 2-gram is
  two characters). Measured with the defaults: 2.4% of the first 2,000
  Chinese hotel reviews (ChnSentiCorp) dropped, against 3.2% of the 124
  WikiText-2 valid and test articles with word n-grams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lm.data import text_stats
from lm.data.checks import ArgumentError, check_at_least, check_fraction

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's English stop words: a kept document contains at least two of them."""

CJK_STOP_WORDS = {
    "zh": ("的", "了", "是", "在", "我", "有", "和", "不", "这", "就", "人", "也"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "れ", "な"),
    "ko": ("이", "의", "는", "을", "에", "가", "고", "하", "를", "다", "도", "로"),
}
"""The most frequent function characters of each CJK language (our choice, not Gopher's)."""

BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "◦", "‣", "⁃", "-", "*", "·")


class GopherQuality:
    """Filter: Gopher's quality rules (word count and length, symbols, bullets, alphabetic words, stop words).

    Reasons: ``gopher_quality.`` + ``word_count``, ``mean_word_length``,
    ``symbol_word_ratio``, ``bullet_lines``, ``ellipsis_lines``,
    ``alpha_words``, ``stop_words``.
    """

    name = "gopher_quality"

    def __init__(self, *, min_words: int = 50, max_words: int = 100_000,
                 min_cjk_chars: int = 100, max_cjk_chars: int = 200_000,
                 min_mean_word_length: float = 3.0, max_mean_word_length: float = 10.0,
                 max_symbol_word_ratio: float = 0.1, max_bullet_lines: float = 0.9,
                 max_ellipsis_lines: float = 0.3, min_alpha_words: float = 0.8,
                 min_stop_words: int = 2,
                 stop_words: Mapping[str, Sequence[str]] | None = None):
        counts = dict(min_words=min_words, max_words=max_words, min_cjk_chars=min_cjk_chars,
                      max_cjk_chars=max_cjk_chars, min_mean_word_length=min_mean_word_length,
                      max_mean_word_length=max_mean_word_length, max_symbol_word_ratio=max_symbol_word_ratio,
                      min_stop_words=min_stop_words)
        for name, value in counts.items():
            check_at_least(name, value, 0)
        fractions = dict(max_bullet_lines=max_bullet_lines, max_ellipsis_lines=max_ellipsis_lines,
                         min_alpha_words=min_alpha_words)
        for name, value in fractions.items():
            check_fraction(name, value)
        self.min_words, self.max_words = min_words, max_words
        self.min_cjk_chars, self.max_cjk_chars = min_cjk_chars, max_cjk_chars
        self.min_mean_word_length = min_mean_word_length
        self.max_mean_word_length = max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines = max_bullet_lines
        self.max_ellipsis_lines = max_ellipsis_lines
        self.min_alpha_words = min_alpha_words
        self.min_stop_words = min_stop_words
        if stop_words is None:
            stop_words = {"en": GOPHER_STOP_WORDS, **CJK_STOP_WORDS}
        self.stop_words = {lang: frozenset(ws) for lang, ws in stop_words.items()}

    def __call__(self, text: str, lang: str | None) -> str | None:
        """The drop reason, or None to keep the document."""
        by_char = text_stats.uses_chars(lang)
        words = text_stats.words(text, lang)
        low, high = ((self.min_cjk_chars, self.max_cjk_chars) if by_char
                     else (self.min_words, self.max_words))
        if not low <= len(words) <= high:
            return f"{self.name}.word_count"
        if not by_char:
            mean_length = sum(len(w) for w in words) / len(words)
            if not self.min_mean_word_length <= mean_length <= self.max_mean_word_length:
                return f"{self.name}.mean_word_length"
        symbols = max(text.count("#"), text.count("...") + text.count("…"))
        if symbols / len(words) > self.max_symbol_word_ratio:
            return f"{self.name}.symbol_word_ratio"
        lines = text_stats.lines(text)
        if lines:
            bullets = sum(line.startswith(BULLETS) for line in lines)
            if bullets / len(lines) > self.max_bullet_lines:
                return f"{self.name}.bullet_lines"
            ellipses = sum(line.endswith(("...", "…")) for line in lines)
            if ellipses / len(lines) > self.max_ellipsis_lines:
                return f"{self.name}.ellipsis_lines"
        tokens = text_stats.tokens(text, lang)
        alpha = sum(map(text_stats.has_letter, tokens))
        if alpha / len(tokens) < self.min_alpha_words:
            return f"{self.name}.alpha_words"
        stop_words = self.stop_words.get(lang or "")
        if stop_words is not None:
            units = words if by_char else (w.lower().strip(".,;:!?\"'()") for w in words)
            if len(stop_words.intersection(units)) < self.min_stop_words:
                return f"{self.name}.stop_words"
        return None


class GopherRepetition:
    """Filter: Gopher's repetition rules (duplicate lines and paragraphs, repeated n-grams).

    `top_ngrams` and `dup_ngrams` are lists of ``[n, max_fraction]`` pairs.
    Reasons: ``gopher_repetition.`` + ``dup_line_frac``, ``dup_para_frac``,
    ``dup_line_char_frac``, ``dup_para_char_frac``, ``top_<n>gram``,
    ``dup_<n>gram``.
    """

    name = "gopher_repetition"

    def __init__(self, *, max_dup_line_frac: float = 0.30, max_dup_para_frac: float = 0.30,
                 max_dup_line_char_frac: float = 0.20, max_dup_para_char_frac: float = 0.20,
                 top_ngrams: Sequence[Sequence[float]] = ((2, 0.20), (3, 0.18), (4, 0.16)),
                 dup_ngrams: Sequence[Sequence[float]] = (
                     (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))):
        fractions = dict(max_dup_line_frac=max_dup_line_frac, max_dup_para_frac=max_dup_para_frac,
                         max_dup_line_char_frac=max_dup_line_char_frac, max_dup_para_char_frac=max_dup_para_char_frac)
        for name, value in fractions.items():
            check_fraction(name, value)
        self.max_dup_line_frac = max_dup_line_frac
        self.max_dup_para_frac = max_dup_para_frac
        self.max_dup_line_char_frac = max_dup_line_char_frac
        self.max_dup_para_char_frac = max_dup_para_char_frac
        self.top_ngrams = [_ngram_limit(pair, "top_ngrams") for pair in top_ngrams]
        self.dup_ngrams = [_ngram_limit(pair, "dup_ngrams") for pair in dup_ngrams]

    def __call__(self, text: str, lang: str | None) -> str | None:
        """The drop reason, or None to keep the document."""
        line_frac, line_chars = text_stats.duplicate_fractions(text_stats.lines(text))
        if line_frac > self.max_dup_line_frac:
            return f"{self.name}.dup_line_frac"
        para_frac, para_chars = text_stats.duplicate_fractions(text_stats.paragraphs(text))
        if para_frac > self.max_dup_para_frac:
            return f"{self.name}.dup_para_frac"
        if line_chars > self.max_dup_line_char_frac:
            return f"{self.name}.dup_line_char_frac"
        if para_chars > self.max_dup_para_char_frac:
            return f"{self.name}.dup_para_char_frac"
        words = text_stats.words(text, lang)
        for n, limit in self.top_ngrams:
            if text_stats.top_ngram_char_fraction(words, n) > limit:
                return f"{self.name}.top_{n}gram"
        for n, limit in self.dup_ngrams:
            if text_stats.duplicated_ngram_char_fraction(words, n) > limit:
                return f"{self.name}.dup_{n}gram"
        return None


def _ngram_limit(pair: Sequence[float], field: str) -> tuple[int, float]:
    if len(pair) != 2:
        raise ArgumentError(field, f"{pair!r} must be an [n, max_fraction] pair, e.g. [[2, 0.2], [3, 0.18]]")
    n, limit = pair
    if not (isinstance(n, int) or isinstance(n, float) and n.is_integer()) or n < 1:
        raise ArgumentError(field, f"{field} has n-gram size {n}; sizes are whole numbers >= 1, "
                                   "e.g. [[2, 0.2], [3, 0.18]]")
    check_fraction(field, limit)
    return int(n), float(limit)
