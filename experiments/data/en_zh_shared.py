"""The issue-4 acceptance recipe: shared English and Chinese corpora plus planted documents.

    lm data prepare --config experiments/data/en_zh_shared.py --output runs/data/en_zh --workers 2

Sources (from ../shared/data beside the project): WikiText-2 validation and test
articles (English), two Chinese review corpora (hotel and food delivery), and
planted.jsonl (`lm.data.prepare.planted.write_shared_inputs`: low-quality, toxic,
PII-bearing, duplicated documents and bad lines). The toxicity filter's model is
trained once on Davidson et al.'s tweets without the planted ones, and cached beside
the planted file under $LM_CACHE_DIR (default ~/.cache/lm).
"""

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MAX_DOC_CHARS = 200_000
NUM_TOXIC = 20


def _toxicity_model(cache: Path) -> Path:
    """A toxicity classifier trained on Davidson et al.'s tweets (hate or offensive = toxic),
    leaving out the tweets planted as toxic documents."""
    from lm.data.classify.datasets import CSV_FORMATS, load_labelled_csv
    from lm.data.classify.train import train_classifier
    from lm.data.prepare.planted import planted_toxic_tweets

    path = cache / "toxicity_davidson.npz"
    if not path.exists():
        data = load_labelled_csv(SHARED / "toxicity" / "davidson_labeled_data.csv", **CSV_FORMATS["davidson"])
        planted = set(planted_toxic_tweets(SHARED, 5 * NUM_TOXIC))
        keep = [i for i, t in enumerate(data.texts) if t not in planted]
        model, _ = train_classifier([data.texts[i] for i in keep], data.labels[keep])
        model.save(path)
    return path


def get_recipe():
    from lm.data.prepare.planted import write_shared_inputs

    if not SHARED.is_dir():
        raise FileNotFoundError(f"{SHARED} is missing: this recipe needs the shared data folder")
    cache = Path(os.environ.get("LM_CACHE_DIR", Path.home() / ".cache" / "lm")) / "prepare-en-zh-v4"
    planted = write_shared_inputs(cache, SHARED, max_doc_chars=MAX_DOC_CHARS, num_toxic=NUM_TOXIC)
    wiki = r"\n(?= = [^=])"  # a new article starts at each " = Title = " line
    return {
        "sources": [
            {"name": "wiki_valid", "path": str(SHARED / "en" / "wikitext2_valid.tokens.txt"), "doc_separator": wiki},
            {"name": "wiki_test", "path": str(SHARED / "en" / "wikitext2_test.tokens.txt"), "doc_separator": wiki},
            {"name": "hotel", "path": str(SHARED / "zh" / "chnsenticorp_htl_all.csv"), "csv_column": "review"},
            {"name": "waimai", "path": str(SHARED / "zh" / "waimai_10k.csv"), "csv_column": "review"},
            {"name": "planted", "path": str(planted / "planted.jsonl")},
        ],
        "steps": [
            {"step": "normalize"},
            {"step": "langid"},
            {"step": "language", "keep": {"en": 0.5, "zh": 0.5}},
            {"step": "gopher_quality", "min_cjk_chars": 30},
            {"step": "gopher_repetition"},
            {"step": "c4", "min_sentences": 1},
            {"step": "toxicity", "model_path": str(_toxicity_model(cache)), "threshold": 0.8, "languages": ["en"]},
            {"step": "pii"},
            {"step": "exact_dedup"},
            {"step": "minhash_dedup"},
        ],
        "input": {"max_doc_chars": MAX_DOC_CHARS},
        "execution": {"docs_per_task": 2000},
        "output": {"docs_per_shard": 5000},
        "tokenizer": {"vocab_size": 8000},
        "tokens": {"group_by": "lang"},
        "mixture": {"temperature": 2.0},
    }
