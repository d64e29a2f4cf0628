"""FineWeb's extra heuristic rules (Penedo et al. 2024, section 3.3): `FineWebQuality`.

The paper's three rules, with its thresholds, plus the newline-to-word
ratio that FineWeb's released filter also applies to list-like pages:

* the fraction of lines ending in punctuation is at most 0.12 -> drop;
* the fraction of characters in duplicated lines is at least 0.1 -> drop;
* the fraction of lines shorter than 30 characters is at least 0.67 -> drop;
* more than 0.3 newlines per word -> drop (a list, not prose).

Chinese, Japanese and Korean: a line is short below `short_line_cjk_chars`
characters (default 10: 30 English characters are about 5 words, and 5
Chinese words about 9 characters), words are characters, and the
full-width marks 。！？”」』 also end lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from lm.data import text_stats
from lm.data.checks import check_at_least, check_fraction

FINEWEB_TERMINAL_PUNCT = (".", "'", '"', "!", "?", "”", "。", "！", "？", "」", "』")
"""FineWeb's line endings (. ' " ! ?) plus their full-width CJK forms."""


class FineWebQuality:
    """Filter: FineWeb's line-punctuation, duplicated-line, short-line and list rules.

    Reasons: ``fineweb.line_punct_ratio``, ``fineweb.dup_line_chars``,
    ``fineweb.short_lines``, ``fineweb.list_like``.
    """

    name = "fineweb"

    def __init__(self, *, min_line_punct_ratio: float = 0.12, max_dup_line_chars: float = 0.1,
                 short_line_chars: int = 30, short_line_cjk_chars: int = 10,
                 max_short_lines: float = 0.67, max_newline_ratio: float = 0.3,
                 terminal_punct: Sequence[str] = FINEWEB_TERMINAL_PUNCT):
        for name, value in dict(min_line_punct_ratio=min_line_punct_ratio, max_dup_line_chars=max_dup_line_chars,
                                max_short_lines=max_short_lines).items():
            check_fraction(name, value)
        for name, value in dict(short_line_chars=short_line_chars, short_line_cjk_chars=short_line_cjk_chars,
                                max_newline_ratio=max_newline_ratio).items():
            check_at_least(name, value, 0)
        self.min_line_punct_ratio = min_line_punct_ratio
        self.max_dup_line_chars = max_dup_line_chars
        self.short_line_chars = short_line_chars
        self.short_line_cjk_chars = short_line_cjk_chars
        self.max_short_lines = max_short_lines
        self.max_newline_ratio = max_newline_ratio
        self.terminal_punct = tuple(terminal_punct)

    def __call__(self, text: str, lang: str | None) -> str | None:
        """The drop reason, or None to keep the document."""
        lines = text_stats.lines(text)
        if not lines:
            return f"{self.name}.line_punct_ratio"
        punct = sum(line.endswith(self.terminal_punct) for line in lines)
        if punct / len(lines) <= self.min_line_punct_ratio:
            return f"{self.name}.line_punct_ratio"
        if text_stats.duplicate_fractions(lines)[1] >= self.max_dup_line_chars:
            return f"{self.name}.dup_line_chars"
        short_limit = (self.short_line_cjk_chars if text_stats.uses_chars(lang)
                       else self.short_line_chars)
        short = sum(len(line) < short_limit for line in lines)
        if short / len(lines) >= self.max_short_lines:
            return f"{self.name}.short_lines"
        words = text_stats.words(text, lang)
        if not words or text.count("\n") / len(words) > self.max_newline_ratio:
            return f"{self.name}.list_like"
        return None
