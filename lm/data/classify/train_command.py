"""`lm data train-classifier`: train a classifier from a training file, write the model and a JSON report.

    lm data train-classifier --config experiments/data/toxicity_classifier.py --output toxicity.bin
                             [--backend lm|fasttext]

The file's `get_classifier()` (`train_config`) names the labelled data, the
backend and its settings. The model goes to --output (.npz for "lm", .bin for
"fasttext"; another suffix is refused before any work), which the
quality_classifier and toxicity steps load as ``"model": PATH``; the report
(data counts, held-out ROC-AUC, precision and recall at the threshold, training
seconds) goes beside it as ``<output>.report.json``. Training is deterministic:
the held-out split is a hash of each text, and both backends take the file's
seed (fastText with thread=1 writes the same bytes every run).
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from pathlib import Path
from typing import Any

from lm.config import ConfigError
from lm.data.classify.datasets import load_labelled_csv
from lm.data.classify.fasttext_model import import_fasttext
from lm.data.classify.train import Classifier, train_classifier, train_quality_classifier
from lm.data.classify.train_config import SUFFIX_OF_BACKEND, ClassifierSpec, load_classifier_spec
from lm.data.read import DataError, iter_sources
from lm.files import atomic_write

REPORT_SUFFIX = ".report.json"
_SKIPPED_SHOWN = 5


def report_path(output: Path) -> Path:
    """Where the report of the model written to `output` goes."""
    return output.with_name(output.name + REPORT_SUFFIX)


def check_output(output: Path, backend: str) -> None:
    """ConfigError naming --output unless its suffix is the one `backend` writes."""
    suffix = SUFFIX_OF_BACKEND[backend]
    if output.suffix != suffix:
        other = [b for b, s in SUFFIX_OF_BACKEND.items() if s == output.suffix]
        alternative = f" or pass --backend {other[0]}" if other else ""
        raise ConfigError(f"--output {output}: backend {backend!r} writes a {suffix} model; name it "
                          f"{output.with_suffix(suffix).name}{alternative}")


def train_from_file(config: str | Path, output: str | Path, backend: str | None = None) -> dict[str, Any]:
    """Train as the file `config` says (`backend` overrides its choice), write the model and report; return it."""
    spec = load_classifier_spec(config, backend)
    output = Path(output)
    check_output(output, spec.backend)
    if spec.backend == "fasttext":
        import_fasttext()  # a missing package fails before the data is read
    kwargs = {"heldout_fraction": spec.heldout_fraction, "threshold": spec.threshold, "backend": spec.backend,
              "n_buckets": spec.lm["n_buckets"], "char_ngrams": spec.lm["char_ngrams"],
              "config": spec.train_config(), "fasttext_config": spec.fasttext_config()}
    start = time.perf_counter()
    if spec.is_quality:
        reference, raw = _read_texts(spec, "reference"), _read_texts(spec, "raw")
        model, info = _train(train_quality_classifier, (reference, raw), kwargs, spec.data["reference"])
        data = {"kind": "quality", "reference": spec.data["reference"], "raw": spec.data["raw"], **info["balance"]}
    else:
        texts, labels, data = _read_csv(spec)
        model, info = _train(train_classifier, (texts, labels), kwargs, spec.data["csv"])
    seconds = time.perf_counter() - start
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    report = {"config": str(config), "model": str(output), "model_bytes": output.stat().st_size,
              "backend": spec.backend, "data": data, "train": info["train"], "heldout": info["heldout"],
              "settings": info["settings"], "train_seconds": round(seconds, 3)}
    with atomic_write(report_path(output)) as f:
        f.write((json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return report


def summary_line(report: dict[str, Any]) -> str:
    """One line: the held-out numbers and where the model and report went."""
    h = report["heldout"]
    return (f"{report['backend']} classifier: held-out ROC-AUC {h['roc_auc']:.4f}, precision {h['precision']:.4f} "
            f"and recall {h['recall']:.4f} at {h['threshold']} on {h['n']} texts ({h['n_positive']} positive); "
            f"trained in {report['train_seconds']:.1f} s; model: {report['model']}; "
            f"report: {report_path(Path(report['model']))}")


def _train(trainer, data: tuple, kwargs: dict, source: Any) -> tuple[Classifier, dict]:
    try:
        return trainer(*data, **kwargs)
    except ValueError as e:  # e.g. a split with one class: say which data it came from
        raise DataError(f"{source}: {e}") from None


def _read_csv(spec: ClassifierSpec) -> tuple[list[str], Any, dict[str, Any]]:
    data = spec.data
    if not Path(data["csv"]).is_file():
        raise ConfigError(f"classifier field 'data.csv': {data['csv']} is not a file")
    _check_columns(Path(data["csv"]), data)
    label_map = {value: 1 for value in data["positive"]}
    label_map.update({value: 0 for value in data["negative"] or ()})
    loaded = load_labelled_csv(data["csv"], text_column=data["text_column"], label_column=data["label_column"],
                               label_map=label_map, other_label=0 if data["negative"] is None else None)
    for key in ("positive", "negative"):
        absent = [v for v in data[key] or () if v not in loaded.label_values]
        if absent:
            raise ConfigError(f"classifier field 'data.{key}': {absent[0]!r} never occurs in column "
                              f"{data['label_column']!r} of {data['csv']}; its values: {list(loaded.label_values)}")
    return loaded.texts, loaded.labels, {
        "kind": "csv", "csv": data["csv"], "rows_used": len(loaded.texts), "positive": int(loaded.labels.sum()),
        "label_values": loaded.label_values, "rows_skipped": len(loaded.skipped),
        "first_skipped": loaded.skipped[:_SKIPPED_SHOWN]}


def _check_columns(path: Path, data: dict) -> None:
    """ConfigError naming the field and the CSV's columns when a named column is not in its header."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # load_labelled_csv reports the file's problem
    for key in ("text_column", "label_column"):
        if header is not None and data[key] not in header:
            raise ConfigError(f"classifier field 'data.{key}': {path} has no column {data[key]!r}; "
                              f"its columns: {header}")


def _read_texts(spec: ClassifierSpec, side: str) -> list[str]:
    try:  # the sources are checked here, their contents while reading (errors naming FILE:LINE)
        documents = iter_sources(spec.data[side], text_field=spec.data["text_field"], hf_split=spec.data["hf_split"])
    except DataError as e:
        raise DataError(f"classifier field 'data.{side}': {e}") from None
    limit = spec.data["limit"] or None
    texts = [doc.text for doc in itertools.islice(documents, limit)]
    if not texts:
        raise DataError(f"classifier field 'data.{side}': no texts in {spec.data[side]}")
    return texts
