"""`Normalize`: the first modifier of data preparation (Unicode, whitespace, control characters).

Steps, in order, each switchable by a constructor flag, each counted under
its own key when it changed something:

* ``line_endings``: "\\r\\n" and lone "\\r" become "\\n" (count: line breaks rewritten);
* ``control_chars``: control characters (Unicode category Cc) other than
  "\\n" and "\\t" are removed, and so are the invisible U+FEFF (byte-order
  mark) and U+200B (zero-width space) (count: characters removed);
* ``nfc``: Unicode NFC composition (count: 1 when the text was not NFC);
* ``collapse_spaces``: a run of two or more spaces/tabs after a visible
  character becomes one space; leading indentation is kept, so source code
  keeps its structure (count: runs collapsed);
* ``strip_trailing``: spaces and tabs at the end of each line are removed
  (count: lines stripped).
"""

from __future__ import annotations

import re
import unicodedata

_LINE_ENDING = re.compile(r"\r\n?")
# Category Cc is exactly U+0000-U+001F and U+007F-U+009F.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u200b]+")
_INNER_SPACE_RUN = re.compile(r"(?<=[^ \t\n])[ \t]{2,}(?=[^ \t\n])")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


class Normalize:
    """Modifier: normalise Unicode, line endings, control characters and spaces."""

    name = "normalize"

    def __init__(self, *, nfc: bool = True, line_endings: bool = True, control_chars: bool = True,
                 collapse_spaces: bool = True, strip_trailing: bool = True):
        self.nfc = nfc
        self.line_endings = line_endings
        self.control_chars = control_chars
        self.collapse_spaces = collapse_spaces
        self.strip_trailing = strip_trailing

    def __call__(self, text: str, lang: str | None = None) -> tuple[str, dict[str, int]]:
        """Return the normalised text and the count of each kind of change."""
        counts: dict[str, int] = {}
        if self.line_endings:
            text, counts["line_endings"] = _LINE_ENDING.subn("\n", text)
        if self.control_chars:
            removed = sum(len(m) for m in _CONTROL.findall(text))
            text, counts["control_chars"] = _CONTROL.sub("", text), removed
        if self.nfc and not unicodedata.is_normalized("NFC", text):
            text, counts["nfc"] = unicodedata.normalize("NFC", text), 1
        if self.collapse_spaces:
            text, counts["collapse_spaces"] = _INNER_SPACE_RUN.subn(" ", text)
        if self.strip_trailing:
            text, counts["strip_trailing"] = _TRAILING_SPACE.subn("", text)
        return text, {kind: n for kind, n in counts.items() if n}
