"""End to end: `lm data prepare` on the offline tiny_demo recipe with the real steps, and (slow)
the issue-4 acceptance recipe over the shared English and Chinese corpora."""

import json
import os
from pathlib import Path

import pytest

from lm.cli import main
from lm.data.prepare.mixture import prepared_mixture
from lm.data.prepare.output import iter_clean, read_jsonl_zst
from lm.data.prepare.quarantine import read_quarantine
from lm.data.shards import TokenShards
from lm.data.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_demo_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "prepare", "--config", str(ROOT / "experiments/data/tiny_demo.py"),
                 "--output", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    d = rep["documents"]
    assert d["read"] == d["quarantined"] + d["dropped"] + d["clean"]
    assert d["quarantined"] == 8 and d["clean"] > 40

    removed = {o["id"]: o["reason"] for p in sorted((out / "removed").glob("*.zst")) for o in read_jsonl_zst(p)}
    planted = {reason for doc_id, reason in removed.items() if doc_id.startswith("docstrings/english.jsonl:")
               and 49 <= int(doc_id.rsplit(":", 1)[1]) <= 56}
    assert planted >= {"language.la", "exact_dedup.duplicate", "minhash_dedup.near_duplicate"}
    assert removed["docstrings/english.jsonl:54"] == removed["docstrings/english.jsonl:55"] == "exact_dedup.duplicate"
    assert removed["reviews/chinese.csv:10"] == "exact_dedup.duplicate"  # a repeated Chinese review
    assert "docstrings/english.jsonl:1" not in removed  # the first copy is kept

    clean = {r.id: r for r in iter_clean(out / "clean")}
    pii = clean["docstrings/english.jsonl:53"]
    assert "maria.lopez@example.org" not in pii.text and "AKIAIOSFODNN7EXAMPLE" not in pii.text
    assert pii.meta["changes"]["pii"]["email"] == 1 and pii.lang == "en"
    assert {r.lang for r in clean.values()} == {"en", "zh"}

    quarantine = read_quarantine(out / "quarantine.jsonl")
    assert [(q.source, q.file, q.line) for q in quarantine] == [
        ("docstrings", "english.jsonl", n) for n in range(57, 63)] + [
        ("reviews", "chinese.csv", 11), ("notes", "b.txt", 1)]

    tokenizer = Tokenizer.load(out / "tokenizer" / "tokenizer.model")
    shards = {g: TokenShards(out / "tokens" / g, verify=True) for g in ("en", "zh")}
    heldout = {g: TokenShards(out / "heldout" / g, verify=True) for g in ("en", "zh")}
    assert sum(s.num_docs for s in [*shards.values(), *heldout.values()]) == d["clean"]
    assert heldout["en"].num_docs == rep["tokens"]["en"]["heldout_docs"] == 2  # tokens.heldout_fraction 0.01
    zh_doc = next(r for r in clean.values() if r.lang == "zh")
    assert tokenizer.decode(shards["zh"].doc(0)) == zh_doc.text
    assert rep["tokens"]["zh"]["num_tokens"] == shards["zh"].num_tokens
    assert (out / "plots" / "language.png").stat().st_size > 1000

    batches = prepared_mixture(out, seq_len=32, global_batch_size=4, num_steps=3, seed=0, process_index=0,
                               process_count=1)
    batch = next(batches)
    assert batch["inputs"].shape == (4, 32) and batch["targets"].max() < tokenizer.vocab_size
    assert (batch["segment_ids"][:, 0] == 1).all() and (batch["positions"][:, 0] == 0).all()

    capsys.readouterr()
    assert main(["data", "report", str(out)]) == 0
    assert capsys.readouterr().out.startswith("# Data preparation report")


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
def test_en_zh_shared_acceptance(tmp_path):
    """Issue 4's acceptance run (about 30-50 s on 2 cores): every planted document is caught."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the acceptance recipe reads the shared English and Chinese corpora")
    out = tmp_path / "en_zh"
    assert main(["data", "prepare", "--config", str(ROOT / "experiments/data/en_zh_shared.py"),
                 "--output", str(out), "--workers", "2"]) == 0
    rep = json.loads((out / "report.json").read_text())
    d = rep["documents"]
    assert d["read"] == d["quarantined"] + d["dropped"] + d["clean"] and d["clean"] > 5000
    removed = {o["id"]: o["reason"] for p in sorted((out / "removed").glob("*.zst")) for o in read_jsonl_zst(p)
               if o["source"] == "planted"}
    planted = [json.loads(line) for line in (Path(os.environ["LM_CACHE_DIR"]) / "prepare-en-zh-v4" /
                                             "planted.jsonl").read_bytes().splitlines()[:31]]
    for line, record in enumerate(planted, start=1):
        doc_id = f"planted/planted.jsonl:{line}"
        if record["planted"] == "pii":
            assert doc_id not in removed
        else:
            assert doc_id in removed, record["planted"]
    assert removed["planted/planted.jsonl:8"] == removed["planted/planted.jsonl:31"] == "minhash_dedup.near_duplicate"
    assert sum(r == "toxicity.score" for r in removed.values()) >= 5
    assert len(read_quarantine(out / "quarantine.jsonl")) == d["quarantined"]
    assert {g: TokenShards(out / "tokens" / g).num_docs for g in ("en", "zh")} == {
        g: rep["tokens"][g]["num_docs"] for g in ("en", "zh")}
