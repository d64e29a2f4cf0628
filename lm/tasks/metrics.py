"""Per-example metrics, discontinuous beside continuous (Schaeffer et al. 2023), and their means.

Multiple choice (choice log-likelihoods ll_i, correct choice g):
    acc        argmax_i ll_i == g
    acc_norm   argmax_i ll_i / len(choice_i in characters) == g   (lm-eval's acc_norm)
    acc_bytes  argmax_i ll_i / len(choice_i in UTF-8 bytes) == g  (lm-eval's acc_bytes)
    logprob    ll_g, nats
    brier      sum_i (softmax(ll)_i - [i == g])^2, in [0, 2]; lower is better
Generation (greedy text, cut at the stop sequences, then extracted):
    exact_match  extracted == answer
    logprob      log p(delimiter + answer | context), teacher-forced, nats
    edit_distance  Levenshtein distance between the tokens of the extraction and of the answer
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "acc_bytes": True, "logprob": True, "brier": False,
                    "exact_match": True, "edit_distance": False}


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def multiple_choice(lls: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, float]:
    """The multiple-choice metrics of one example (see the module docstring)."""
    ll = np.asarray(lls, np.float64)
    chars = np.asarray([len(c) for c in choices], np.float64)
    nbytes = np.asarray([len(c.encode("utf-8")) for c in choices], np.float64)
    probs = np.exp(ll - ll.max())
    probs /= probs.sum()
    return {"acc": float(np.argmax(ll) == gold), "acc_norm": float(np.argmax(ll / chars) == gold),
            "acc_bytes": float(np.argmax(ll / nbytes) == gold), "logprob": float(ll[gold]),
            "brier": float(np.sum((probs - np.eye(len(choices))[gold]) ** 2))}


def extract(text: str, pattern: str, strip: bool) -> str:
    """The answer in a generation: the first match of `pattern` (its group 1 if it has
    groups; '' when nothing matches) or all of it, stripped of surrounding whitespace."""
    if pattern:
        match = re.search(pattern, text)
        text = "" if match is None else match.group(1 if match.re.groups else 0)
    return text.strip() if strip else text


def generation(extracted: str, answer: str, logprob: float, extracted_ids: Sequence[int],
               answer_ids: Sequence[int]) -> dict[str, float]:
    """The generation metrics of one example (see the module docstring)."""
    return {"exact_match": float(extracted == answer), "logprob": float(logprob),
            "edit_distance": float(edit_distance(extracted_ids, answer_ids))}


def aggregate(per_example: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the examples and its standard error (`<metric>_stderr`)."""
    out: dict[str, float] = {}
    for name in per_example[0] if per_example else ():
        values = np.asarray([m[name] for m in per_example], np.float64)
        out[name] = float(values.mean())
        out[f"{name}_stderr"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return out
