"""C4's heuristic cleaning (Raffel et al. 2020, section 2.2): `C4Lines` and `C4Quality`.

C4 has line rules (a line that fails is removed) and page rules (a page
that fails is dropped). A filter can only keep or drop, so the line rules
are a modifier, `C4Lines`, and the page rules a filter, `C4Quality`. Run
`C4Lines` first, so that the page rules, the sentence count above all, see
the page as C4 keeps it. A consequence: a "{" or "lorem ipsum" on a line
that `C4Lines` removed no longer drops the page.
C4's bad-word rule is the separate `BadWords` filter.

Lines end in C4's terminal punctuation (. ! ? or a closing quotation mark,
straight or curly) or in the CJK marks 。！？」』, which never end an
English line, so English behaviour is C4's. Chinese, Japanese and Korean
lines are measured in characters (`min_cjk_chars_per_line`, default 10,
since a Chinese word averages about 2 characters), and 。！？ end
sentences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lm.data import text_stats
from lm.data.checks import check_at_least

C4_TERMINAL_PUNCT = (".", "!", "?", '"', "”", "。", "！", "？", "」", "』")
"""C4's line endings (. ! ? and a closing quotation mark) plus the CJK marks 。！？」』."""

C4_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies",
                     "隐私政策", "使用条款", "服务条款", "プライバシーポリシー", "利用規約")
"""C4's boilerplate phrases (lower case), plus their common Chinese and Japanese forms."""

_SENTENCE_END = re.compile(r"[.!?]+(?=[\"'”’)\]]*(?:\s|$))|[。！？]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class C4Lines:
    """Modifier: remove the lines C4 removes, counting each under the first rule it fails.

    Counts: ``javascript`` (mentions "javascript"), ``policy`` (a
    boilerplate phrase), ``no_terminal_punct``, ``short_line`` (fewer than
    `min_words_per_line` words). Blank lines are kept (runs of them become
    one) so paragraphs survive.
    """

    name = "c4_lines"

    def __init__(self, *, min_words_per_line: int = 5, min_cjk_chars_per_line: int = 10,
                 terminal_punct: Sequence[str] = C4_TERMINAL_PUNCT,
                 policy_phrases: Sequence[str] = C4_POLICY_PHRASES):
        check_at_least("min_words_per_line", min_words_per_line, 0)
        check_at_least("min_cjk_chars_per_line", min_cjk_chars_per_line, 0)
        self.min_words_per_line = min_words_per_line
        self.min_cjk_chars_per_line = min_cjk_chars_per_line
        self.terminal_punct = tuple(terminal_punct)
        self.policy_phrases = tuple(p.lower() for p in policy_phrases)

    def __call__(self, text: str, lang: str | None) -> tuple[str, dict[str, int]]:
        """Return the text without the failing lines, and the count removed by each rule."""
        min_words = (self.min_cjk_chars_per_line if text_stats.uses_chars(lang)
                     else self.min_words_per_line)
        kept: list[str] = []
        counts: dict[str, int] = {}
        for line in text.split("\n"):
            stripped = line.strip()
            rule = self._failed_rule(stripped, lang, min_words) if stripped else None
            if rule is None:
                kept.append(line)
            else:
                counts[rule] = counts.get(rule, 0) + 1
        if not counts:
            return text, {}
        return _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n"), counts

    def _failed_rule(self, line: str, lang: str | None, min_words: int) -> str | None:
        lowered = line.lower()
        if "javascript" in lowered:
            return "javascript"
        if any(phrase in lowered for phrase in self.policy_phrases):
            return "policy"
        if not line.endswith(self.terminal_punct):
            return "no_terminal_punct"
        if len(text_stats.words(line, lang)) < min_words:
            return "short_line"
        return None


class C4Quality:
    """Filter: C4's page rules on the kept lines.

    Reasons: ``c4.lorem_ipsum``, ``c4.curly_brace`` (a "{" or "｛"),
    ``c4.too_few_sentences`` (fewer than `min_sentences`; a sentence ends at
    . ! ? followed by a space, a closing quote or the end, or at 。！？).
    """

    name = "c4"

    def __init__(self, *, min_sentences: int = 3):
        check_at_least("min_sentences", min_sentences, 0)
        self.min_sentences = min_sentences

    def __call__(self, text: str, lang: str | None) -> str | None:
        """The drop reason, or None to keep the document."""
        if "lorem ipsum" in text.lower():
            return f"{self.name}.lorem_ipsum"
        if "{" in text or "｛" in text:
            return f"{self.name}.curly_brace"
        if count_sentences(text) < self.min_sentences:
            return f"{self.name}.too_few_sentences"
        return None


def count_sentences(text: str) -> int:
    """The number of sentences in `text`: pieces between sentence ends that hold a letter or digit."""
    return sum(any(ch.isalnum() for ch in piece) for piece in _SENTENCE_END.split(text))
