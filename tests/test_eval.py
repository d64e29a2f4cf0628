"""`lm eval`: loss and bits per byte checked against an independent computation, their
independence of batch and window settings, lossy tokenizers, and the command."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import logsumexp

from lm.cli import main
from lm.config import default_config
from lm.convert.workdir import write_workdir
from lm.train.state import abstract_params, read_run_config, restore_params
from lm.data.build import is_heldout
from lm.data.read import iter_documents
from lm.data.tokenizer import Tokenizer, train_tokenizer
from lm.evaluate import document_windows, score_documents
from tests.helpers import forward1, stdlib_texts, tiny_model_config

VOCAB = 384
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Tokenizer]:
    """A workdir holding a random model (not uniform: init_std 0.1) over real text."""
    root = tmp_path_factory.mktemp("eval")
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(stdlib_texts()):
        (corpus / f"{i:02d}.py").write_text(text)
    tokenizer = train_tokenizer(stdlib_texts(), root / "run" / "tokenizer", vocab_size=VOCAB)
    cfg = default_config()
    cfg.model = tiny_model_config(vocab_size=VOCAB, max_seq_len=128, init_std=0.1)
    cfg.data.sources = (str(corpus),)
    cfg.data.heldout_fraction = 0.3
    cfg.data.seq_len = 64
    rng = np.random.default_rng(0)  # weights ~ N(0, 0.1), norm scales ~ 1 + N(0, 0.1)
    params = jax.tree_util.tree_map_with_path(
        lambda path, s: ((path[-1].key == "scale") + 0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
        abstract_params(cfg.model)[1])
    write_workdir(cfg, params, root / "run", {"test": "random"})
    return root / "run", tokenizer


def model_of(workdir: Path):
    graphdef, params, _ = restore_params(workdir, read_run_config(workdir))
    return graphdef, params


def reference_nats(model, tokenizer: Tokenizer, text: str, seq_len: int) -> float:
    """Sum of -log p over [BOS]+ids -> ids+[EOS], in non-overlapping windows that each start
    afresh, one window per forward pass (padding after a window cannot change it: causal)."""
    ids = tokenizer.encode(text)
    inputs, targets = [tokenizer.bos_id] + ids, ids + [tokenizer.eos_id]
    total = 0.0
    for start in range(0, len(targets), seq_len):
        window_in, window_tg = inputs[start:start + seq_len], targets[start:start + seq_len]
        row = np.zeros((1, seq_len), np.int32)
        row[0, :len(window_in)] = window_in
        logits = np.asarray(forward1(model, jnp.asarray(row)), np.float64)[0, :len(window_in)]
        log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)
        total -= log_probs[np.arange(len(window_tg)), window_tg].sum()
    return total


def test_loss_and_bits_per_byte_match_an_independent_computation(run):
    workdir, tokenizer = run
    graphdef, params = model_of(workdir)
    texts = [stdlib_texts()[0][:40], stdlib_texts()[1][:1500], stdlib_texts()[2][:900], "x = 1\n"]
    seq_len = 64
    totals = score_documents(graphdef, params, tokenizer, texts, seq_len=seq_len, batch_size=3)
    lengths = [len(tokenizer.encode(t)) + 1 for t in texts]
    assert max(lengths) > 3 * seq_len  # the long documents are windowed
    assert totals.tokens == sum(lengths)
    assert totals.windows == sum(math.ceil(n / seq_len) for n in lengths)
    assert totals.bytes == sum(len(t.encode("utf-8")) for t in texts)
    assert (totals.documents, totals.lossy_documents) == (4, 0)
    model = nnx.merge(graphdef, params)
    expected = sum(reference_nats(model, tokenizer, t, seq_len) for t in texts)
    assert totals.nats == pytest.approx(expected, rel=1e-5)
    metrics = totals.metrics()
    assert metrics["loss"] == pytest.approx(expected / sum(lengths), rel=1e-5)
    assert metrics["bits_per_byte"] == pytest.approx(
        metrics["loss"] * totals.tokens / (math.log(2) * totals.bytes), rel=1e-12)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-12)
    assert 3.0 < metrics["loss"] < 12.0  # a random model: around ln(384) = 5.95, not degenerate


def test_windows_cover_every_token_once():
    windows = document_windows(list(range(10, 17)), bos_id=1, eos_id=2, seq_len=3)
    assert windows == [([1, 10, 11], [10, 11, 12]), ([12, 13, 14], [13, 14, 15]), ([15, 16], [16, 2])]
    assert document_windows([], bos_id=1, eos_id=2, seq_len=4) == [([1], [2])]


def test_results_do_not_depend_on_batch_size_or_seq_len_for_documents_that_fit(run):
    workdir, tokenizer = run
    graphdef, params = model_of(workdir)
    texts = [line[:60] for text in stdlib_texts()[:4] for line in text.splitlines()[:12] if line.strip()]
    assert max(len(tokenizer.encode(t)) for t in texts) + 1 <= 64
    results = [score_documents(graphdef, params, tokenizer, texts, seq_len=s, batch_size=b)
               for s, b in ((64, 1), (96, 7), (128, 16))]
    for other in results[1:]:
        assert (other.tokens, other.bytes, other.documents) == (results[0].tokens, results[0].bytes, len(texts))
        assert other.metrics()["bits_per_byte"] == pytest.approx(results[0].metrics()["bits_per_byte"], rel=1e-6)


def test_a_lossy_tokenizer_is_counted_and_only_the_text_it_keeps_is_measured(run, tmp_path):
    workdir, _ = run
    graphdef, params = model_of(workdir)
    ascii_texts = [t.encode("ascii", "ignore").decode() for t in stdlib_texts()]
    lossy = train_tokenizer(ascii_texts, tmp_path, vocab_size=200, byte_fallback=False)
    text = "snow \u2603 man"
    kept = lossy.decode(lossy.encode(text))
    assert kept != text
    totals = score_documents(graphdef, params, lossy, [text, "a = b\n"], seq_len=32, batch_size=2)
    assert totals.lossy_documents == 1
    assert totals.bytes == len(kept.encode("utf-8")) + len(b"a = b\n")


def test_lm_eval_command_writes_results(run, tmp_path, capsys):
    workdir, tokenizer = run
    source = str(Path(json.loads((workdir / "config.json").read_text())["data"]["sources"][0]) / "03.py")
    out = tmp_path / "r.json"
    assert main(["eval", "--workdir", str(workdir), "--data", source, "--seq-len", "64",
                 "--batch-size", "4", "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["output"] == str(out)
    assert (results["step"], results["documents"], results["seq_len"]) == (0, 1, 64)
    assert results["data"] == {"split": "all", "sources": [source], "text_field": "text", "max_documents": None}
    text = Path(source).read_text()
    assert results["bytes"] == len(text.encode("utf-8"))
    assert results["tokens"] == len(tokenizer.encode(text)) + 1
    assert results["bits_per_byte"] == pytest.approx(
        results["nats"] / (math.log(2) * results["bytes"]), rel=1e-12)

    assert main(["eval", "--workdir", str(workdir), "--heldout", "--max-documents", "2",
                 "--batch-size", "4"]) == 0
    heldout = json.loads((workdir / "eval" / "step0-heldout.json").read_text())
    expected = [d for d in iter_documents(str(Path(source).parent)) if is_heldout(d.text, 0.3)][:2]
    assert expected and heldout["documents"] == len(expected)
    assert heldout["bytes"] == sum(len(d.text.encode("utf-8")) for d in expected)
    assert heldout["data"]["split"] == "heldout" and heldout["seq_len"] == 64


def test_lm_eval_errors_name_the_problem(run, tmp_path, capsys):
    workdir, _ = run
    assert main(["eval", "--workdir", str(workdir), "--data", "x.txt", "--seq-len", "1000"]) == 2
    assert "--seq-len 1000 must be in [1, model.max_seq_len=128]" in capsys.readouterr().err
    assert main(["eval", "--workdir", str(tmp_path / "nothing"), "--heldout"]) == 2
    assert "config.json does not exist" in capsys.readouterr().err
    assert main(["eval", "--workdir", str(workdir), "--data", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt: no such file" in capsys.readouterr().err
