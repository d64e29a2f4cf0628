"""`BadWords`: drop documents containing a word from a list file (C4's bad-word rule).

The file holds one entry per line (UTF-8; blank lines are skipped). Matching
ignores case. An entry containing a Chinese, Japanese or Korean character
matches anywhere, as a substring, since those scripts do not mark word
boundaries; any other entry matches only as a whole word or phrase (not
inside a longer word, so "ass" does not match "class"), and the spaces of a
phrase match any run of whitespace.

Speed: the document's words (runs of word characters) are put in a set
once; a one-word entry is a set lookup, and a phrase is searched for only
when all its words are in the set.
"""

from __future__ import annotations

import re
from pathlib import Path

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
_WORD = re.compile(r"\w+")


class BadWords:
    """Filter: drop a document that contains any entry of the word list at `path`.

    Reason: ``badwords.match``.
    """

    name = "badwords"

    def __init__(self, path: str):
        self.path = str(path)
        try:
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"BadWords: cannot read word list {path!r}: {e}; give a UTF-8 file "
                             "with one word or phrase per line") from e
        entries = sorted({line.strip().lower() for line in lines if line.strip()})
        if not entries:
            raise ValueError(f"BadWords: word list {path!r} has no entries; give a UTF-8 file "
                             "with one word or phrase per line")
        self._substrings = tuple(e for e in entries if _CJK.search(e))
        others = [e for e in entries if not _CJK.search(e)]
        self._words = frozenset(e for e in others if _WORD.fullmatch(e))
        self._phrases = [
            (frozenset(_WORD.findall(e)),
             re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, e.split())) + r"(?!\w)"))
            for e in others if not _WORD.fullmatch(e)]

    def __call__(self, text: str, lang: str | None = None) -> str | None:
        """The drop reason, or None to keep the document."""
        lowered = text.lower()
        words = set(_WORD.findall(lowered))
        if (not self._words.isdisjoint(words)
                or (self._substrings and _CJK.search(lowered)
                    and any(entry in lowered for entry in self._substrings))
                or any(needed <= words and pattern.search(lowered)
                       for needed, pattern in self._phrases)):
            return f"{self.name}.match"
        return None
