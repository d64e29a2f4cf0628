"""Heuristic document filters (Gopher, C4, FineWeb, bad words) and C4's line-removing modifier.

A filter is called as ``filter(text, lang)`` and returns None to keep the
document or a reason ``"<name>.<rule>"`` to drop it; a modifier returns
``(new_text, counts_by_kind)``. Thresholds are keyword arguments whose
defaults are the published ones; `lang` (from `lm.data.langid`) switches
Chinese, Japanese and Korean to character statistics.
"""

from lm.data.filters.badwords import BadWords
from lm.data.filters.c4 import C4Lines, C4Quality
from lm.data.filters.fineweb import FineWebQuality
from lm.data.filters.gopher import GopherQuality, GopherRepetition

__all__ = ["BadWords", "C4Lines", "C4Quality", "FineWebQuality", "GopherQuality",
           "GopherRepetition"]
