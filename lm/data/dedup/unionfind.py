"""Union-find over integer nodes, vectorised with numpy for millions of pairs.

Every root is the smallest node of its set (a union always hooks the larger root under
the smaller), so with nodes numbered in (shard, position) order a set's root is its
first document: the one dedup keeps. ``parent`` is kept fully compressed between
calls: ``parent[x]`` is the root of ``x``.
"""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets over nodes ``0 .. n-1``; ``union`` takes whole arrays of pairs."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def roots(self, nodes: np.ndarray) -> np.ndarray:
        """The root (smallest member) of each node's set."""
        return self.parent[nodes]

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Merge the sets of ``a[i]`` and ``b[i]`` for every ``i``."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        while a.size:
            ra, rb = self.parent[a], self.parent[b]
            apart = ra != rb
            a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
            if not a.size:
                return
            # Hook each larger root under the smallest root it is paired with this round;
            # pairs whose roots still differ afterwards go round again.
            np.minimum.at(self.parent, np.maximum(ra, rb), np.minimum(ra, rb))
            self._compress()

    def _compress(self) -> None:
        """Pointer jumping until every node points at its root (hooks only point to
        smaller nodes, so there are no cycles and this ends)."""
        while True:
            grand = self.parent[self.parent]
            if np.array_equal(grand, self.parent):
                return
            self.parent = grand
