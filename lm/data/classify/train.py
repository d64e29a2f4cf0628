"""Train and evaluate the classifiers: toxicity from labelled texts, quality from a reference corpus.

The held-out split is chosen by a hash of each text, so it does not depend on
order or process, and exact duplicates never straddle it. Every trained model
carries its report (held-out ROC-AUC, precision, recall, F1) in `model.info`.

Two backends learn from the same texts and split: "lm" (`model.LinearClassifier`,
hashed n-gram logistic regression written as .npz; the default, since it needs no
optional package and scored the higher ROC-AUC in BENCHMARKS.md) and "fasttext"
(`fasttext_model.FastTextModel`, a supervised fastText model written as .bin, which
scored 2-4x more documents per core there, at a lower ROC-AUC; needs ``lm[fasttext]``). Both models
have `score_many`, `save` and `info`, and the pipeline's classifier steps load either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from lm.data.classify.fasttext_model import FastTextConfig, FastTextModel, train_fasttext
from lm.data.classify.features import HashedFeatures
from lm.data.classify.metrics import report
from lm.data.classify.model import LinearClassifier, TrainConfig, fit

BACKENDS = ("lm", "fasttext")
DEFAULT_BACKEND = "lm"
Classifier = LinearClassifier | FastTextModel


def text_unit(text: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by `text` and `salt` (keyed BLAKE2b; the same in every process)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def heldout_mask(texts: Sequence[str], fraction: float) -> np.ndarray:
    """True for the texts whose hash puts them in the held-out `fraction`."""
    return np.array([text_unit(t, "heldout") < fraction for t in texts], dtype=bool)


def evaluate(model: Classifier, texts: Sequence[str], labels: np.ndarray, threshold: float = 0.5) -> dict:
    """`metrics.report` of `model` on `texts` with 0/1 `labels`."""
    return report(np.asarray(labels), model.score_many(list(texts)), threshold)


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    *,
    heldout_fraction: float = 0.1,
    threshold: float = 0.5,
    n_buckets: int = 1 << 20,
    char_ngrams: int = 0,
    config: TrainConfig = TrainConfig(),
    backend: str = DEFAULT_BACKEND,
    fasttext_config: FastTextConfig = FastTextConfig(),
) -> tuple[Classifier, dict]:
    """Train on the texts outside a hash-chosen held-out split; return the model and its report.

    The report holds the train counts, the `metrics.report` on the held-out
    split at `threshold`, and the settings; it is also stored in `model.info`.
    `backend` "lm" trains with `config` (and `n_buckets`, `char_ngrams`),
    "fasttext" with `fasttext_config`; its model scores label "__label__1".
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: must be one of {BACKENDS}")
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got {sorted(set(labels.tolist()) - {0, 1})[:5]}")
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction={heldout_fraction}: must be in (0, 1)")
    heldout = heldout_mask(texts, heldout_fraction)
    for name, mask in (("training", ~heldout), ("held-out", heldout)):
        n_positive = int(labels[mask].sum())
        if n_positive in (0, int(mask.sum())):
            raise ValueError(
                f"the {name} split has {int(mask.sum())} texts of which {n_positive} positive; both classes "
                f"must occur in it: give more texts of each class or change heldout_fraction={heldout_fraction}")
    if backend == "fasttext":
        model = train_fasttext([t for t, h in zip(texts, heldout) if not h], [str(int(y)) for y in labels[~heldout]],
                               fasttext_config)
        model.label = model.find_label("1")
        scores = model.score_many([t for t, h in zip(texts, heldout) if h])
        settings = {"backend": backend, "heldout_fraction": heldout_fraction, **asdict(fasttext_config)}
    else:
        features = HashedFeatures(n_buckets=n_buckets, char_ngrams=char_ngrams)
        x = features.matrix(list(texts))
        model = fit(x[~heldout], labels[~heldout], features, config)
        scores = model.score_matrix(x[heldout])
        settings = {"backend": backend, "heldout_fraction": heldout_fraction, "n_buckets": n_buckets,
                    "char_ngrams": char_ngrams, **asdict(config)}
    model.info = {
        "train": {"n": int((~heldout).sum()), "n_positive": int(labels[~heldout].sum())},
        "heldout": report(labels[heldout], scores, threshold),
        "settings": settings,
    }
    return model, model.info


def train_quality_classifier(
    reference_texts: Sequence[str], raw_texts: Sequence[str], **train_kwargs
) -> tuple[Classifier, dict]:
    """Train P(reference-like | text): positives from `reference_texts`, negatives from `raw_texts`.

    The classes are balanced by keeping, from the larger one, the texts with
    the smallest hashes (a deterministic, order-free sample). Keyword
    arguments go to `train_classifier`; its report gains a "balance" entry.
    """
    n = min(len(reference_texts), len(raw_texts))
    if n == 0:
        raise ValueError(f"need reference and raw texts; got {len(reference_texts)} and {len(raw_texts)}")
    positives = _hash_sample(reference_texts, n)
    negatives = _hash_sample(raw_texts, n)
    model, info = train_classifier(positives + negatives, np.r_[np.ones(n, np.int8), np.zeros(n, np.int8)],
                                   **train_kwargs)
    info["balance"] = {"reference_available": len(reference_texts), "raw_available": len(raw_texts),
                       "used_per_class": n}
    return model, info


def _hash_sample(texts: Sequence[str], n: int) -> list[str]:
    """The `n` texts with the smallest sampling hashes, in their original order."""
    if n >= len(texts):
        return list(texts)
    keys = np.array([text_unit(t, "balance") for t in texts])
    return [texts[i] for i in np.sort(np.argsort(keys, kind="stable")[:n])]
