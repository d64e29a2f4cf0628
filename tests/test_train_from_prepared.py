"""End to end: `lm data prepare` on the offline tiny_demo recipe, then `lm train` from its output
(data.prepared_corpus): held-out documents stay out of training, eval loss is reported, a run
continued to more steps matches an uninterrupted one, and bad combinations are named."""

import json
import math
from pathlib import Path

import pytest

from lm.cli import main
from lm.config import ConfigError, load_config
from lm.data.build import is_heldout
from lm.data.prepare.mixture import prepared_mixture
from lm.data.prepare.output import iter_clean
from lm.data.prepare.recipe import validate_recipe
from lm.data.read import DataError
from lm.data.shards import TokenShards
from lm.data.tokenizer import Tokenizer
from lm.train.loop import train
from lm.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments/configs/tiny.py")
FRACTION = 0.1
# tiny_demo with more documents held out, so that the held-out split fills an eval batch.
RECIPE = """
from lm.config import call_python_file

def get_recipe():
    recipe = call_python_file({demo!r}, "get_recipe", kind="recipe")
    recipe["tokens"]["heldout_fraction"] = {fraction}
    return recipe
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    recipe = root / "recipe.py"
    recipe.write_text(RECIPE.format(demo=str(ROOT / "experiments/data/tiny_demo.py"), fraction=FRACTION))
    assert main(["data", "prepare", "--config", str(recipe), "--output", str(root / "demo")]) == 0
    return root / "demo"


def run_config(corpus: Path, *extra: str, steps: int = 6, vocab: int = 1024):
    return load_config(TINY, [f"--config.data.prepared_corpus={corpus}", f"--config.model.vocab_size={vocab}",
                              "--config.data.seq_len=64", "--config.train.batch_size=4",
                              "--config.train.eval_batches=1", "--config.train.schedule=constant",
                              "--config.train.warmup_steps=0", "--config.train.eval_every=2",
                              "--config.train.checkpoint_every=4", f"--config.train.steps={steps}", *extra])


def test_groups_are_split_by_content_hash_and_training_reads_only_the_train_side(prepared):
    clean = list(iter_clean(prepared / "clean"))
    tokenizer = Tokenizer.load(prepared / "tokenizer" / "tokenizer.model")
    report = json.loads((prepared / "report.json").read_text())["tokens"]
    train_docs = set()
    for group in ("en", "zh"):
        texts = [r.text for r in clean if r.lang == group]
        held_texts = [t for t in texts if is_heldout(t, FRACTION)]
        train, held = TokenShards(prepared / "tokens" / group), TokenShards(prepared / "heldout" / group)
        assert (train.num_docs, held.num_docs) == (len(texts) - len(held_texts), len(held_texts))
        assert report[group]["heldout_docs"] == held.num_docs and report[group]["num_docs"] == train.num_docs
        assert [tokenizer.decode(held.doc(i)) for i in range(held.num_docs)] == held_texts
        group_train = {tuple(train.doc(i)) for i in range(train.num_docs)}
        assert group_train.isdisjoint(tuple(held.doc(i)) for i in range(held.num_docs))
        train_docs |= group_train
    assert sum(report[g]["heldout_docs"] for g in report) > 0

    # Every training segment is a piece of a tokens/ document, never of a heldout/ one.
    train_text = "|" + "|".join(" ".join(map(str, d)) for d in train_docs) + "|"
    batches = prepared_mixture(prepared, seq_len=64, global_batch_size=4, num_steps=20, seed=0,
                               process_index=0, process_count=1)
    segments = 0
    for batch in batches:
        for targets, seg in zip(batch["targets"], batch["segment_ids"]):
            for s in set(seg[seg > 0].tolist()):
                piece = targets[seg == s].tolist()
                piece = piece[:-1] if piece[-1] == tokenizer.eos_id else piece
                assert " ".join(map(str, piece)) in train_text
                segments += 1
    assert segments >= 80


def test_training_reports_eval_loss_and_a_continued_run_matches_an_uninterrupted_one(prepared, tmp_path):
    continued, straight = tmp_path / "continued", tmp_path / "straight"
    train(run_config(prepared, steps=4), continued)
    train(run_config(prepared, steps=6), continued)  # resumes from the step-4 checkpoint
    summary = train(run_config(prepared, steps=6), straight)
    assert summary["tokenizer"] == str(prepared / "tokenizer" / "tokenizer.model")

    def losses(workdir, kind="train"):
        return [(r["step"], r["loss"]) for r in read_metrics(workdir / "metrics.jsonl", kind=kind)]

    assert losses(continued) == losses(straight) and [s for s, _ in losses(straight)] == list(range(1, 7))
    assert losses(continued, "eval") == losses(straight, "eval")
    evals = read_metrics(straight / "metrics.jsonl", kind="eval")
    assert [r["step"] for r in evals] == [2, 4, 6] and all(r["tokens"] > 200 for r in evals)
    first = losses(straight)[0][1]
    assert abs(first - math.log(1024)) < 0.5 and all(math.isfinite(r["loss"]) for r in evals)
    assert evals[-1]["loss"] < first

    # lm sample and lm eval --heldout find the prepared corpus's tokenizer and held-out split
    assert main(["sample", "--workdir", str(straight), "--max-new-tokens", "4"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--workdir", str(straight), "--heldout", "--output", str(out),
                 "--seq-len", "64", "--batch-size", "4"]) == 0
    result = json.loads(out.read_text())
    held = sum(TokenShards(d).num_docs for d in (prepared / "heldout").iterdir())
    assert result["documents"] == held and result["data"]["sources"] == [str(prepared)]


def test_vocab_mismatch_names_the_field_and_the_right_value(prepared, tmp_path):
    with pytest.raises(DataError, match=r"model.vocab_size is 512; set --config.model.vocab_size=1024"):
        train(run_config(prepared, vocab=512), tmp_path)


def test_prepared_corpus_refuses_fields_it_replaces_and_missing_outputs(prepared, tmp_path):
    with pytest.raises(ConfigError, match=r"'data.sources': is \('x.txt',\), but data.prepared_corpus="):
        run_config(prepared, "--config.data.sources=['x.txt']")
    with pytest.raises(ConfigError, match="'data.tokenizer_path'"):
        run_config(prepared, "--config.data.tokenizer_path=t.model")
    with pytest.raises(DataError, match=r"data.prepared_corpus=.*nothing has no recipe.json; run `lm data prepare"):
        train(run_config(tmp_path / "nothing"), tmp_path / "run")


@pytest.mark.parametrize("value", [1.0, -0.1, "0.1", True])
def test_recipe_heldout_fraction_is_checked(value):
    raw = {"sources": [{"name": "a", "path": "a.txt"}], "tokens": {"heldout_fraction": value}}
    with pytest.raises(ConfigError, match=r"recipe field 'tokens.heldout_fraction': .* must be a number in \[0, 1\)"):
        validate_recipe(raw, base_dir=Path("."))
