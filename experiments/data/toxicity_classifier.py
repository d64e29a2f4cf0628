"""An example classifier file: a toxicity classifier trained on Davidson et al.'s tweets (hate or offensive = 1).

    lm data train-classifier --config experiments/data/toxicity_classifier.py --output runs/toxicity.bin
    lm data train-classifier --config experiments/data/toxicity_classifier.py --output runs/toxicity.npz --backend lm

The CSV is the shared copy (../shared/data/toxicity/davidson_labeled_data.csv from the
repository root; set LM_SHARED_DATA to its data folder elsewhere): column `class` is 0
hate speech, 1 offensive, 2 neither. A recipe then loads the model:
``{"step": "toxicity", "model": "runs/toxicity.bin", "threshold": 0.5, "languages": ["en"]}``.
"""

import os
from pathlib import Path

SHARED = Path(os.environ.get("LM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def get_classifier():
    return {
        "data": {
            "csv": str(SHARED / "toxicity" / "davidson_labeled_data.csv"),
            "text_column": "tweet",
            "label_column": "class",
            "positive": ["0", "1"],  # hate speech and offensive; every other value (2, neither) is negative
        },
        "backend": "fasttext",
        "fasttext": {"epoch": 10, "lr": 0.5, "dim": 16, "word_ngrams": 2, "minn": 1, "maxn": 4, "thread": 1},
        "lm": {"epochs": 5, "char_ngrams": 0},
        "seed": 0,
        "heldout_fraction": 0.1,
        "threshold": 0.5,
    }
