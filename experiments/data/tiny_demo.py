"""A small offline recipe: standard-library docstrings, a few Chinese paragraphs, planted junk.

    lm data prepare --config experiments/data/tiny_demo.py --output runs/data/tiny_demo

The input (english.jsonl, chinese.csv, notes/) is written once under
$LM_CACHE_DIR (default ~/.cache/lm) by `lm.data.prepare.planted.write_demo_inputs`.
"""

import os
import sys
from pathlib import Path

from lm.data.prepare.planted import write_demo_inputs

MAX_DOC_CHARS = 20_000


def get_recipe():
    cache = Path(os.environ.get("LM_CACHE_DIR", Path.home() / ".cache" / "lm"))
    inputs = write_demo_inputs(cache / f"prepare-demo-v2-py{sys.version_info[0]}{sys.version_info[1]}",
                               max_doc_chars=MAX_DOC_CHARS)
    return {
        "sources": [
            {"name": "docstrings", "path": str(inputs / "english.jsonl")},
            {"name": "reviews", "path": str(inputs / "chinese.csv"), "csv_column": "review"},
            {"name": "notes", "path": str(inputs / "notes")},
        ],
        "steps": [
            {"step": "normalize"},
            {"step": "langid"},
            {"step": "language", "keep": {"en": 0.5, "zh": 0.5}},
            {"step": "gopher_quality", "min_words": 40, "min_cjk_chars": 60},
            {"step": "gopher_repetition"},
            {"step": "c4"},
            {"step": "pii"},
            {"step": "exact_dedup"},
            {"step": "minhash_dedup"},
        ],
        "input": {"max_doc_chars": MAX_DOC_CHARS},
        "execution": {"docs_per_task": 16},
        "output": {"docs_per_shard": 20},
        "tokenizer": {"vocab_size": 1024},
        "tokens": {"group_by": "lang"},
        "mixture": {"temperature": 2.0},  # across the languages' token groups
    }
