"""The held-out split by content: which documents are kept out of training."""

from __future__ import annotations

import hashlib


def is_heldout(text: str, fraction: float) -> bool:
    """A stable split by content: the same text lands on the same side wherever it is read
    from, and exact duplicates never straddle train and held-out."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
