"""A logistic-regression classifier on hashed n-gram features, its training and its file.

Why logistic regression and not a fastText embedding bag: for one binary
label, fastText's model (average the n-gram embeddings into a d-dim vector,
then a linear output) is a linear function of the same hashed counts whose
weight vector is constrained to rank d; it can express nothing logistic
regression cannot, and the unconstrained convex problem trains reproducibly
with no embedding initialisation. It is also the model GPT-3 used for its
quality filter (logistic regression on hashed term features).

Training is mini-batch Adam on the mean log loss plus `l2/2 * |w|^2`, in numpy.
Updates are lazy (fastText and TF's LazyAdam do the same): a batch touches only
the weights of the buckets it contains, so a step costs O(batch features), not
O(n_buckets). Shuffling uses `numpy.random.default_rng(seed)`, and every
reduction runs in a fixed order, so the same data and seed give bit-identical
weights.

A model is one ``.npz`` file: float32 `weights`, a float64 `bias`, and
`metadata`, a JSON string holding the format version, the feature settings and
an `info` dict (for example the training report).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
from scipy.special import expit

from lm.data.classify.features import HashedFeatures
from lm.data.read import DataError
from lm.files import atomic_write

FORMAT_VERSION = 1
_KIND = "lm.data.classify.LinearClassifier"


@dataclass
class LinearClassifier:
    """P(label = 1 | text) = sigmoid(features(text) . weights + bias)."""

    features: HashedFeatures
    weights: np.ndarray
    bias: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights.shape != (self.features.n_buckets,):
            raise ValueError(f"weights have shape {self.weights.shape}; the features need ({self.features.n_buckets},)")

    def score(self, text: str) -> float:
        """The probability that `text` has label 1."""
        indices, values = self.features.vector(text)
        return float(expit(np.dot(self.weights[indices].astype(np.float64), values.astype(np.float64)) + self.bias))

    def score_many(self, texts: list[str]) -> np.ndarray:
        """`score` of every text, as a float64 array."""
        return self.score_matrix(self.features.matrix(texts))

    def score_matrix(self, x: scipy.sparse.csr_matrix) -> np.ndarray:
        """Probabilities for rows of an already featurised matrix."""
        return expit(x @ self.weights.astype(np.float64) + self.bias)

    def save(self, path: str | Path) -> None:
        """Write the model to `path` (an .npz file) atomically."""
        metadata = {
            "kind": _KIND,
            "format_version": FORMAT_VERSION,
            "features": {"n_buckets": self.features.n_buckets, "char_ngrams": self.features.char_ngrams},
            "info": self.info,
        }
        with atomic_write(Path(path)) as f:
            np.savez_compressed(
                f, weights=self.weights.astype(np.float32), bias=np.float64(self.bias),
                metadata=np.array(json.dumps(metadata)))

    @classmethod
    def load(cls, path: str | Path) -> LinearClassifier:
        """Read a model written by `save`; a corrupt or other-version file raises `DataError` naming it."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in ("weights", "bias", "metadata")}
            metadata = json.loads(str(arrays["metadata"]))
            version = (metadata.get("kind"), metadata.get("format_version"))
        except FileNotFoundError:
            raise DataError(f"{path}: no such classifier model file") from None
        except (OSError, ValueError, EOFError, KeyError, AttributeError, zipfile.BadZipFile) as e:
            raise _unreadable(path, e) from e
        if version != (_KIND, FORMAT_VERSION):
            raise DataError(
                f"{path}: classifier format {version[0]!r} version {version[1]!r}, but this lm reads "
                f"{_KIND!r} version {FORMAT_VERSION}; retrain the model with this version")
        try:
            features = HashedFeatures(**metadata["features"])
        except (KeyError, TypeError, ValueError) as e:
            raise _unreadable(path, e) from e
        weights = arrays["weights"]
        if weights.shape != (features.n_buckets,) or not np.isfinite(weights).all():
            raise DataError(
                f"{path}: weights of shape {weights.shape} (finite: {bool(np.isfinite(weights).all())}) "
                f"do not fit n_buckets={features.n_buckets}; the file is corrupt, retrain the model")
        return cls(features, weights, float(arrays["bias"]), metadata.get("info", {}))


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(
        f"{path}: not a readable classifier model ({type(error).__name__}: {error}); "
        "retrain it, or point to the .npz file that LinearClassifier.save wrote")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings for `fit` (defaults measured on the Davidson and COLD toxicity sets)."""

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 0.02
    l2: float = 1e-6
    seed: int = 0


def fit(
    x: scipy.sparse.csr_matrix, labels: np.ndarray, features: HashedFeatures, config: TrainConfig
) -> LinearClassifier:
    """Train a `LinearClassifier` on featurised rows `x` with 0/1 `labels` by lazy mini-batch Adam."""
    labels = np.asarray(labels, dtype=np.float64)
    if x.shape != (len(labels), features.n_buckets):
        raise ValueError(f"features {x.shape} do not match {len(labels)} labels x {features.n_buckets} buckets")
    if len(labels) == 0:
        raise ValueError("no training examples")
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    weights = np.zeros(features.n_buckets, dtype=np.float64)
    moment1 = np.zeros_like(weights)
    moment2 = np.zeros_like(weights)
    bias, bias_m1, bias_m2 = 0.0, 0.0, 0.0
    rng = np.random.default_rng(config.seed)
    step = 0
    for _ in range(config.epochs):
        order = rng.permutation(len(labels))
        shuffled = x[order]
        shuffled_labels = labels[order]
        row_of = np.repeat(np.arange(len(labels)), np.diff(shuffled.indptr))
        for start in range(0, len(labels), config.batch_size):
            stop = min(start + config.batch_size, len(labels))
            lo, hi = shuffled.indptr[start], shuffled.indptr[stop]
            buckets = shuffled.indices[lo:hi]
            values = shuffled.data[lo:hi].astype(np.float64)
            rows = row_of[lo:hi] - start
            logits = np.bincount(rows, weights=weights[buckets] * values, minlength=stop - start) + bias
            residual = (expit(logits) - shuffled_labels[start:stop]) / (stop - start)
            touched, slot = np.unique(buckets, return_inverse=True)
            grad = np.bincount(slot, weights=residual[rows] * values, minlength=len(touched))
            grad += config.l2 * weights[touched]
            step += 1
            lr = config.learning_rate * np.sqrt(1 - beta2**step) / (1 - beta1**step)
            moment1[touched] = beta1 * moment1[touched] + (1 - beta1) * grad
            moment2[touched] = beta2 * moment2[touched] + (1 - beta2) * grad**2
            weights[touched] -= lr * moment1[touched] / (np.sqrt(moment2[touched]) + eps)
            bias_grad = float(residual.sum())
            bias_m1 = beta1 * bias_m1 + (1 - beta1) * bias_grad
            bias_m2 = beta2 * bias_m2 + (1 - beta2) * bias_grad**2
            bias -= lr * bias_m1 / (np.sqrt(bias_m2) + eps)
    return LinearClassifier(features, weights.astype(np.float32), bias)
