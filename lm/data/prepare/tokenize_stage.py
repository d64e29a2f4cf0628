"""Train the tokenizer on the clean output and write its token shards, per group.

    run_dir/tokenizer/tokenizer.model (+ tokenizer.json)   lm.data.tokenizer.train_tokenizer
    run_dir/tokens/<group>/                                  lm.data.shards format

Groups are the recipe's sources (``tokens.group_by = "source"``), the detected
languages ("lang"; documents without one go to "unknown") or one group "all"
("none"); a mixture samples across the groups. Both stages are skipped when their
output is complete (a token directory is complete once it has its manifest).
"""

from __future__ import annotations

from pathlib import Path

from lm.data.prepare.output import iter_clean
from lm.data.prepare.record import Record
from lm.data.read import DataError, Document
from lm.data.shards import MANIFEST_FILE, TokenShards, tokenize_to_shards
from lm.data.tokenizer import MODEL_FILE, Tokenizer, train_tokenizer


def group_of(record: Record, group_by: str) -> str:
    """The token group a clean record belongs to."""
    if group_by == "source":
        return record.source
    if group_by == "lang":
        return record.lang or "unknown"
    return "all"


def tokenize_clean(clean_dir: Path, run_dir: Path, settings: dict, group_by: str) -> dict[str, dict]:
    """Train (or reuse) the tokenizer and write token shards per group; return each group's
    {"num_docs", "num_tokens"}, groups sorted by name."""
    run_dir = Path(run_dir)
    model_path = run_dir / "tokenizer" / MODEL_FILE
    if model_path.exists():
        tokenizer = Tokenizer.load(model_path)
    else:
        texts = (r.text for r in iter_clean(clean_dir))
        try:
            tokenizer = train_tokenizer(
                texts, run_dir / "tokenizer", vocab_size=settings["vocab_size"], model_type=settings["model_type"],
                byte_fallback=settings["byte_fallback"], split_digits=settings["split_digits"],
                max_sentences=settings["max_sentences"], seed=settings["seed"])
        except DataError as e:
            raise DataError(f"training the tokenizer on {clean_dir} failed: {e}") from e
    groups = sorted({group_of(r, group_by) for r in iter_clean(clean_dir)})
    totals = {}
    for group in groups:
        out_dir = run_dir / "tokens" / group
        if not (out_dir / MANIFEST_FILE).exists():
            docs = (Document(r.id, r.text) for r in iter_clean(clean_dir) if group_of(r, group_by) == group)
            tokenize_to_shards(docs, tokenizer, out_dir, progress=False)
        shards = TokenShards(out_dir)
        if shards.tokenizer_fingerprint != tokenizer.fingerprint:
            raise DataError(f"{out_dir} was tokenized with another tokenizer than {model_path}; delete it")
        totals[group] = {"num_docs": shards.num_docs, "num_tokens": shards.num_tokens}
    return totals
