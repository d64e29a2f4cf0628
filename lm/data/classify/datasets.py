"""Load labelled texts (1 = toxic/offensive, 0 = not) from CSV files.

Formats:

* Jigsaw (Toxic Comment Classification Challenge): text in `comment_text`,
  positive when any label column present (`toxic`, `severe_toxic`, `obscene`,
  `threat`, `insult`, `identity_hate`) is 1; recognised by its header;
* `text,label` with label 0/1; recognised by its header;
* any other: name `text_column` and `label_column`, and map the raw label
  strings to 0/1 with `label_map` (values outside it get `other_label`, or are
  skipped when that is None). `CSV_FORMATS` holds the settings for the
  Davidson, Surge and COLD files.

A row that cannot be used (wrong number of fields, empty text, a label outside
the map) is skipped and recorded as "FILE:LINE: reason" in
`LabelledTexts.skipped`, never dropped silently.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lm.data.read import DataError

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
BINARY_LABELS = {"0": 0, "1": 1}

CSV_FORMATS: dict[str, dict] = {
    # Davidson et al. 2017: class 0 = hate speech, 1 = offensive, 2 = neither.
    "davidson": {"text_column": "tweet", "label_column": "class", "label_map": {"0": 1, "1": 1, "2": 0}},
    "surge": {"text_column": "text", "label_column": "is_toxic", "label_map": {"Toxic": 1, "Not Toxic": 0}},
    # COLD (Deng et al. 2022): label 1 = offensive.
    "cold": {"text_column": "TEXT", "label_column": "label", "label_map": BINARY_LABELS},
}


@dataclass
class LabelledTexts:
    """Texts with 0/1 labels, the rows that were skipped ("FILE:LINE: reason"), and how often each raw
    label string occurred in rows with text (`label_values`)."""

    texts: list[str]
    labels: np.ndarray
    skipped: list[str]
    label_values: dict[str, int] = field(default_factory=dict)


def load_labelled_csv(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: dict[str, int] | None = None,
    other_label: int | None = None,
) -> LabelledTexts:
    """Read a labelled CSV (Jigsaw, `text,label`, or named columns with a label map); see the module doc."""
    path = Path(path)
    if other_label not in (None, 0, 1):
        raise ValueError(f"other_label must be 0, 1 or None; got {other_label!r}")
    if (text_column is None) != (label_column is None):
        raise ValueError("give both text_column and label_column, or neither (to detect Jigsaw or text,label)")
    if label_map is not None and not set(label_map.values()) <= {0, 1}:
        raise ValueError(f"label_map values must be 0 or 1; got {label_map}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return _read_rows(path, csv.reader(f), text_column, label_column, label_map, other_label)
    except FileNotFoundError:
        raise DataError(f"{path}: no such labelled CSV file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); re-encode it as UTF-8") from None


def _read_rows(path: Path, reader, text_column: str | None, label_column: str | None,
               label_map: dict[str, int] | None, other_label: int | None) -> LabelledTexts:
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file; expected a CSV header line") from None
    if text_column is None:
        if "comment_text" in header and "toxic" in header:
            text_column, label_columns, label_map = "comment_text", [c for c in JIGSAW_LABELS if c in header], None
        elif "text" in header and "label" in header:
            text_column, label_columns = "text", ["label"]
        else:
            raise DataError(
                f"{path}: header {header} is neither Jigsaw (comment_text, toxic, ...) nor text,label; "
                "name text_column, label_column and label_map")
    else:
        label_columns = [label_column]
    missing = [c for c in (text_column, *label_columns) if c not in header]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; the header has {header}")
    text_at = header.index(text_column)
    label_at = [header.index(c) for c in label_columns]
    mapping = BINARY_LABELS if label_map is None else label_map
    texts: list[str] = []
    labels: list[int] = []
    skipped: list[str] = []
    values: Counter[str] = Counter()
    line = reader.line_num + 1
    try:
        for row in reader:
            where = f"{path}:{line}"
            line = reader.line_num + 1
            if len(row) != len(header):
                skipped.append(f"{where}: {len(row)} fields, the header has {len(header)}")
                continue
            text = row[text_at]
            raw = [row[i].strip() for i in label_at]
            bad = [value for value in raw if value not in mapping] if other_label is None else []
            if not text.strip():
                skipped.append(f"{where}: empty text")
                continue
            values.update(raw)
            if bad:
                skipped.append(f"{where}: label {bad[0]!r} not in {sorted(mapping)}")
            else:
                texts.append(text)
                labels.append(max(mapping.get(value, other_label) for value in raw))
    except csv.Error as e:
        raise DataError(f"{path}:{line}: malformed CSV ({e}); fix or remove that row") from None
    if not texts:
        raise DataError(f"{path}: no usable rows; first problems: {skipped[:3]}")
    return LabelledTexts(texts, np.array(labels, dtype=np.int8), skipped, dict(sorted(values.items())))
