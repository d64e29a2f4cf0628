"""Provenance counters: what each step received, kept, dropped and changed.

One `Provenance` per task and pass counts, for reading and for every step:
documents and characters in and out, drops by reason, modified documents and
changes by kind; plus length, language and classifier-score histograms and a
few examples of removed text per reason. Counters of all tasks merge by summing, examples by
taking the first ones in task order, so the merged result does not depend on
which worker ran what or when.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

LENGTH_BINS_PER_DECADE = 4
LENGTH_DECADES = 7  # the last bin also holds documents of 10**7 characters or more
NUM_LENGTH_BINS = LENGTH_BINS_PER_DECADE * LENGTH_DECADES
READ = "read"
SCORE_BINS = 20  # classifier scores in [0, 1]: bin b holds [b/20, (b+1)/20), the last also 1.0


def length_bin(num_chars: int) -> int:
    """Histogram bin of a document length: bin b holds lengths in [10**(b/4), 10**((b+1)/4))."""
    return min(int(math.log10(max(num_chars, 1)) * LENGTH_BINS_PER_DECADE), NUM_LENGTH_BINS - 1)


def _step_counters() -> dict:
    return {"docs_in": 0, "docs_out": 0, "chars_in": 0, "chars_out": 0, "dropped": {}, "modified_docs": 0,
            "changes": {}}


class Provenance:
    """Counters of one task (or, after `merge`, of a whole run)."""

    def __init__(self, examples_per_reason: int, example_chars: int = 300):
        self.examples_per_reason = examples_per_reason
        self.example_chars = example_chars
        self.read = {"records": 0, "quarantined": {}}
        self.steps: dict[str, dict] = {}
        self.length_in = [0] * NUM_LENGTH_BINS
        self.length_out = [0] * NUM_LENGTH_BINS
        self.lang_out: dict[str, int] = {}
        self.lang_removed: dict[str, int] = {}
        self.scores: dict[str, dict[str, list[int]]] = {}  # step -> {"kept": bins, "dropped": bins}
        self.examples: dict[str, list[dict]] = {}

    def record_read(self) -> None:
        self.read["records"] += 1

    def record_quarantine(self, kind: str) -> None:
        _add(self.read["quarantined"], kind)

    def record_input(self, text: str) -> None:
        """A document entered the first step."""
        self.length_in[length_bin(len(text))] += 1

    def record_step(self, step: str, chars_in: int, chars_out: int | None, *, reason: str | None = None,
                    changes: dict[str, int] | None = None) -> None:
        """One document went through `step`: kept (chars_out) or dropped (reason), maybe changed."""
        c = self.steps.setdefault(step, _step_counters())
        c["docs_in"] += 1
        c["chars_in"] += chars_in
        if reason is not None:
            _add(c["dropped"], reason)
            return
        c["docs_out"] += 1
        c["chars_out"] += chars_out
        if changes is not None:
            c["modified_docs"] += 1
            for kind, n in changes.items():
                _add(c["changes"], kind, int(n))

    def record_score(self, step: str, score: float, *, dropped: bool) -> None:
        """A classifier step scored a document (and kept or dropped it)."""
        bins = self.scores.setdefault(step, {"kept": [0] * SCORE_BINS, "dropped": [0] * SCORE_BINS})
        bins["dropped" if dropped else "kept"][min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)] += 1

    def record_removed(self, doc_id: str, text: str, lang: str | None, reason: str) -> None:
        _add(self.lang_removed, lang or "unknown")
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.examples_per_reason:
            examples.append({"id": doc_id, "text": text[: self.example_chars]})

    def record_output(self, text: str, lang: str | None) -> None:
        """A document came out of the last step."""
        self.length_out[length_bin(len(text))] += 1
        _add(self.lang_out, lang or "unknown")

    def to_json(self) -> dict:
        return {"examples_per_reason": self.examples_per_reason, "example_chars": self.example_chars,
                "read": self.read, "steps": self.steps, "length_in": self.length_in, "length_out": self.length_out,
                "lang_out": self.lang_out, "lang_removed": self.lang_removed, "scores": self.scores,
                "examples": self.examples}

    @classmethod
    def from_json(cls, obj: dict) -> Provenance:
        p = cls(obj["examples_per_reason"], obj["example_chars"])
        for key in ("read", "steps", "length_in", "length_out", "lang_out", "lang_removed", "examples"):
            setattr(p, key, obj[key])
        p.scores = obj.get("scores", {})  # absent from markers written before score histograms
        return p


def merge(parts: Iterable[Provenance], step_order: Iterable[str]) -> Provenance:
    """Sum the counters of `parts` (in task order); steps come out in `step_order`."""
    parts = list(parts)
    total = Provenance(parts[0].examples_per_reason if parts else 0, parts[0].example_chars if parts else 0)
    steps: dict[str, dict] = {}
    for p in parts:
        total.read["records"] += p.read["records"]
        _merge_counts(total.read["quarantined"], p.read["quarantined"])
        for name, c in p.steps.items():
            t = steps.setdefault(name, _step_counters())
            for key in ("docs_in", "docs_out", "chars_in", "chars_out", "modified_docs"):
                t[key] += c[key]
            _merge_counts(t["dropped"], c["dropped"])
            _merge_counts(t["changes"], c["changes"])
        total.length_in = [a + b for a, b in zip(total.length_in, p.length_in)]
        total.length_out = [a + b for a, b in zip(total.length_out, p.length_out)]
        _merge_counts(total.lang_out, p.lang_out)
        _merge_counts(total.lang_removed, p.lang_removed)
        for step, bins in p.scores.items():
            into = total.scores.setdefault(step, {"kept": [0] * SCORE_BINS, "dropped": [0] * SCORE_BINS})
            for kind in ("kept", "dropped"):
                into[kind] = [a + b for a, b in zip(into[kind], bins[kind])]
        for reason, examples in p.examples.items():
            kept = total.examples.setdefault(reason, [])
            kept.extend(examples[: total.examples_per_reason - len(kept)])
    total.steps = {name: steps[name] for name in step_order if name in steps}
    total.read["quarantined"] = dict(sorted(total.read["quarantined"].items()))
    total.lang_out = dict(sorted(total.lang_out.items()))
    total.lang_removed = dict(sorted(total.lang_removed.items()))
    total.examples = dict(sorted(total.examples.items()))
    total.scores = {name: total.scores[name] for name in step_order if name in total.scores}
    for c in total.steps.values():
        c["dropped"] = dict(sorted(c["dropped"].items()))
        c["changes"] = dict(sorted(c["changes"].items()))
    return total


def top_reasons(p: Provenance, n: int) -> list[tuple[str, str, int]]:
    """The `n` most frequent (step, reason, count) drops, ties by name."""
    counts = Counter({(step, reason): k for step, c in p.steps.items() for reason, k in c["dropped"].items()})
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(step, reason, k) for (step, reason), k in ranked[:n]]


def _add(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def _merge_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, n in other.items():
        _add(into, key, n)
