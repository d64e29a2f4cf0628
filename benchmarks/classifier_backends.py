"""The classifier backends side by side: lm's logistic regression, fastText, and the bad-word baseline.

    python benchmarks/classifier_backends.py [--json out.json]

Data (../shared/data, skipped with a message when absent): Davidson et al.'s
English tweets (hate or offensive = 1), trained on 90% and evaluated on the 10%
held out by a hash of the text (`train.heldout_mask`); COLD's Chinese train
split to its test split (offensive = 1). Both backends train through
`train_classifier` on the texts outside its hashed 10% held-out split (COLD's
test split is evaluated whole; the lm backend with its defaults, fastText with
`FastTextConfig`'s defaults, thread=1, seed 0); the bad-word baseline counts
LDNOOBW entries (English whole words, Chinese substrings) and needs no training.

Measured per backend and dataset: ROC-AUC on the evaluation texts, precision and
recall at the threshold (0.5 for the classifiers, one listed word for the
baseline: C4's rule), training CPU seconds (``time.process_time`` of this one
process, featurising included; fastText runs one thread), and documents scored
per CPU second (per core) on the evaluation texts, one document at a time as the
pipeline scores them, plus the model file's size. Prints a markdown table, then
the JSON of every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lm.data.classify import CSV_FORMATS, BadWordScorer, load_labelled_csv, report, train_classifier
from lm.data.classify.train import heldout_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
THRESHOLD = 0.5


def datasets() -> dict[str, tuple[list[str], np.ndarray, list[str], np.ndarray, BadWordScorer]]:
    """name -> (train texts, train labels, evaluation texts, evaluation labels, bad-word scorer)."""
    tox = DATA / "toxicity"
    davidson = load_labelled_csv(tox / "davidson_labeled_data.csv", **CSV_FORMATS["davidson"])
    held = heldout_mask(davidson.texts, 0.1)
    cold_train = load_labelled_csv(tox / "cold_zh_train.csv", **CSV_FORMATS["cold"])
    cold_test = load_labelled_csv(tox / "cold_zh_test.csv", **CSV_FORMATS["cold"])
    return {
        "davidson (en, 10% held out)": (
            davidson.texts, davidson.labels, [t for t, h in zip(davidson.texts, held) if h], davidson.labels[held],
            BadWordScorer(DATA / "badwords" / "en.txt")),
        "cold (zh, train -> test)": (
            cold_train.texts, cold_train.labels, cold_test.texts, cold_test.labels,
            BadWordScorer(DATA / "badwords" / "zh.txt", whole_word=False)),
    }


def per_core_rate(score, texts: list[str]) -> tuple[np.ndarray, float]:
    """(scores, documents per CPU second) of scoring `texts` one at a time."""
    score(texts[0])  # warm-up: first-call costs are not throughput
    start = time.process_time()
    scores = np.array([score(t) for t in texts], dtype=np.float64)
    return scores, len(texts) / (time.process_time() - start)


def measure_backend(backend: str, train_texts, train_labels, test_texts, test_labels) -> dict:
    """Train on the texts outside `train_classifier`'s hashed 10% (Davidson's evaluation texts are that 10%)."""
    start = time.process_time()
    model, info = train_classifier(train_texts, train_labels, backend=backend)
    train_s = time.process_time() - start
    scores, rate = per_core_rate(model.score, test_texts)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("model.bin" if backend == "fasttext" else "model.npz")
        model.save(path)
        size_mb = path.stat().st_size / 1e6
    return {**report(test_labels, scores, THRESHOLD), "train_cpu_s": train_s, "docs_per_s_per_core": rate,
            "train_n": info["train"]["n"], "model_mb": size_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    needed = [DATA / "toxicity" / f for f in ("davidson_labeled_data.csv", "cold_zh_train.csv", "cold_zh_test.csv")]
    if any(not p.exists() for p in needed):
        print(f"skipped: shared data absent ({[str(p) for p in needed if not p.exists()]})")
        return 0
    results: dict[str, dict[str, dict]] = {}
    for name, (train_texts, train_labels, test_texts, test_labels, words) in datasets().items():
        row = results.setdefault(name, {})
        for backend in ("lm", "fasttext"):
            row[backend] = measure_backend(backend, train_texts, train_labels, test_texts, test_labels)
            print(f"{name} {backend}: {row[backend]}", file=sys.stderr, flush=True)
        scores, rate = per_core_rate(words, test_texts)
        row["bad words"] = {**report(test_labels, scores, 1), "train_cpu_s": 0.0, "docs_per_s_per_core": rate,
                            "train_n": 0, "model_mb": 0.0}
    print("| data | backend | ROC-AUC | precision | recall | threshold | train CPU s | docs/s/core | model MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        for backend, r in row.items():
            print(f"| {name} | {backend} | {r['roc_auc']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['threshold']:g} | {r['train_cpu_s']:.1f} | {r['docs_per_s_per_core']:,.0f} | "
                  f"{r['model_mb']:.1f} |")
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
