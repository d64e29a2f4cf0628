"""Text statistics shared by the heuristic filters: words, lines, paragraphs, n-grams.

The one decision that depends on the language is the *word unit*
(`uses_chars`): Chinese (including Wu "wuu" and Cantonese "yue", which the
language identifier tells apart), Japanese and Korean are measured in
characters, because Chinese and Japanese do not separate words with spaces
(Korean does, but its space-separated units are phrases of several words,
so it is counted the same way). Everything else is split on whitespace.

A "word" here is a unit that contains at least one letter or digit: for
whitespace languages a token such as "hello," or "3.5"; for CJK every
character that is a letter or digit (ideographs, kana and hangul are
letters). Punctuation-only tokens and punctuation characters are not
words, so "Hello , world ." has two words.

Duplicate counting follows one rule everywhere: an item (line, paragraph,
n-gram) is a duplicate when an identical item appeared earlier in the
document; the first occurrence is not a duplicate.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections import Counter
from collections.abc import Iterator, Sequence

CJK_LANGS = frozenset({"zh", "wuu", "yue", "ja", "ko"})
"""Languages whose word statistics count characters (the language identifier's codes)."""

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_ALNUM = re.compile(r"[^\W_]")
_ALPHA = re.compile(r"[^\W\d_]")


def uses_chars(lang: str | None) -> bool:
    """True when `lang` is measured in characters instead of whitespace words."""
    return lang in CJK_LANGS


def tokens(text: str, lang: str | None) -> list[str]:
    """Every unit of `text`: whitespace tokens, or non-space characters for CJK."""
    if uses_chars(lang):
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def is_word(token: str) -> bool:
    """True when `token` contains a letter or a digit."""
    return token.isalnum() or _ALNUM.search(token) is not None


def has_letter(token: str) -> bool:
    """True when `token` contains a letter (of any script)."""
    return token.isalpha() or _ALPHA.search(token) is not None


def words(text: str, lang: str | None) -> list[str]:
    """The units of `text` that contain a letter or digit (see module docstring)."""
    if uses_chars(lang):
        return [ch for ch in text if ch.isalnum()]
    return [token for token in text.split() if is_word(token)]


def lines(text: str) -> list[str]:
    """The non-blank lines of `text`, stripped of surrounding whitespace."""
    return [line.strip() for line in text.split("\n") if line.strip()]


def paragraphs(text: str) -> list[str]:
    """The non-blank paragraphs of `text` (separated by blank lines), stripped."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def duplicate_fractions(items: Sequence[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier one, fraction of their characters).

    Both are 0.0 for an empty sequence.
    """
    seen: set[str] = set()
    dup_items = dup_chars = total_chars = 0
    for item in items:
        total_chars += len(item)
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    if not items:
        return 0.0, 0.0
    return dup_items / len(items), (dup_chars / total_chars if total_chars else 0.0)


def ngrams(units: Sequence[str], n: int) -> Iterator[tuple[str, ...]]:
    """The overlapping `n`-grams of `units` in order."""
    return zip(*(units[i:] for i in range(n)))


def top_ngram_char_fraction(units: Sequence[str], n: int) -> float:
    """Fraction of the characters of `units` covered by the most frequent `n`-gram.

    The coverage is the n-gram's character length times its count, over the
    total characters of all units (Gopher, Rae et al. 2021, table A1). An
    n-gram seen only once does not count as repeated, so the result is 0.0
    when no n-gram occurs twice.
    """
    grams = Counter(ngrams(units, n))
    if not grams:
        return 0.0
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(map(len, units))
    return sum(map(len, gram)) * count / total if total else 0.0


def duplicated_ngram_char_fraction(units: Sequence[str], n: int) -> float:
    """Fraction of the characters of `units` inside duplicated `n`-grams.

    Every occurrence of an n-gram after its first marks its units as
    duplicated; a unit covered by several such occurrences counts once
    (Gopher, Rae et al. 2021, table A1: overlapping n-grams are not counted
    twice).
    """
    total = sum(map(len, units))
    if len(units) < n or not total:
        return 0.0
    grams = list(ngrams(units, n))
    first = dict(zip(reversed(grams), range(len(grams) - 1, -1, -1)))  # gram -> first start
    if len(first) == len(grams):
        return 0.0
    starts = range(len(grams))
    dup_chars = covered = 0  # units before index `covered` are already counted
    for start in itertools.compress(starts, map(operator.ne, map(first.__getitem__, grams), starts)):
        dup_chars += sum(map(len, units[max(start, covered):start + n]))
        covered = start + n
    return dup_chars / total
