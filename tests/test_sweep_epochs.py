"""Data-constrained sweeps: the `epochs` kind's plan (U unique tokens, R epochs, fresh-data
baselines), the loader's unique subset (exact size, nested, reshuffled every epoch, held-out
split disjoint), results.csv's unique-token column, and the held-out rows of tuned batches."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lm.config import ConfigError, default_config
from lm.data.build import build_run_data
from lm.data.loader import PackedRows
from lm.data.read import DataError
from lm.data.repeat import UniqueTokens
from lm.data.shards import TokenShards, write_token_shards
from lm.sweep.grid import base_config, expand, load_sweep, parse_sweep
from lm.sweep.results import write_results
from tests.helpers import write_small_stdlib_corpus

SWEEPS = Path(__file__).resolve().parents[1] / "experiments" / "sweeps"
BASE = {"model": {"vocab_size": 512, "max_seq_len": 64}, "data": {"seq_len": 64},
        "train": {"batch_size": 8, "warmup_steps": 2}}
FAMILY = {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16}


def sweep(**fields):
    raw = {"base": BASE, "kind": "epochs", "n_kind": "non_embedding", "family": FAMILY,
           "model_sizes": [12e3], "unique_tokens": 2048, "epochs": [1, 4], **fields}
    return parse_sweep({k: v for k, v in raw.items() if v is not None})


def test_epochs_trains_each_size_on_u_times_r_tokens_of_u_unique():
    specs = expand(sweep(model_sizes=[12e3, 24e3], epochs=[1, 2, 4, 16]))
    assert [s.name for s in specs][:4] == ["d32-L1-U2.05e3-R1", "d32-L1-U2.05e3-R2",
                                           "d32-L1-U2.05e3-R4", "d32-L1-U2.05e3-R16"]
    assert [s.tokens for s in specs[:4]] == [2048, 4096, 8192, 32768]
    assert [s.config().train.steps for s in specs[:4]] == [4, 8, 16, 64]  # 512 tokens a step
    assert {s.config().data.unique_tokens for s in specs} == {2048}
    assert {s.hparams["data.unique_tokens"] for s in specs} == {2048}  # results.csv's hp column
    assert [s.budget for s in specs] == [None] * 8


def test_the_unique_baseline_adds_fresh_data_of_the_same_tokens():
    specs = expand(sweep(epochs=[1, 2, 4], unique_baseline=True))
    assert [(s.name, s.config().data.unique_tokens, s.tokens) for s in specs] == [
        ("d32-L1-U2.05e3-R1", 2048, 2048), ("d32-L1-U2.05e3-R2", 2048, 4096),
        ("d32-L1-U2.05e3-R4", 2048, 8192), ("d32-L1-U4.1e3-R1", 4096, 4096),
        ("d32-L1-U8.19e3-R1", 8192, 8192)]


@pytest.mark.parametrize("fields, message", [
    ({"unique_tokens": 2000}, "data.unique_tokens=2,000 is not a multiple of train.batch_size x "
                              "data.seq_len = 512"),
    ({"unique_tokens": 2.5e3}, "sweep field 'unique_tokens': must be a positive whole number"),
    ({"epochs": []}, "sweep field 'epochs': is empty"),
    ({"epochs": None}, "sweep field 'epochs': is required for kind 'epochs'"),
    ({"tokens": 1e6}, "sweep field 'tokens': is not used by kind 'epochs'"),
    ({"unique_baseline": "yes"}, "sweep field 'unique_baseline': must be True or False"),
    ({"tune": {"data.unique_tokens": [2048, 4096]}}, "tune.data.unique_tokens': is set by the "
                                                      "sweep planner"),
])
def test_bad_epochs_sweeps_are_named(fields, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        expand(sweep(**fields))


def test_the_sweep_refuses_an_override_of_the_unique_tokens():
    with pytest.raises(ConfigError, match="config field 'data.unique_tokens' is set by the sweep"):
        base_config(sweep(), ["--config.data.unique_tokens=4096"])


def test_the_epochs_sweep_files_plan():
    ci = expand(load_sweep(SWEEPS / "epochs_ci.py"))
    assert [(s.config().data.unique_tokens, s.tokens) for s in ci] == [
        (4096, 4096), (4096, 8192), (4096, 16384), (8192, 8192), (16384, 16384)]
    cpu = expand(load_sweep(SWEEPS / "epochs_cpu.py"))
    assert len(cpu) == 27 and {s.n_non_embedding for s in cpu} == {3376, 11872, 50368}
    repeated = [s for s in cpu if s.config().data.unique_tokens == 131072]
    assert sorted({s.tokens // 131072 for s in repeated}) == [1, 2, 4, 8, 16]
    assert {s.config().train.steps * 2048 for s in cpu} == {s.tokens for s in cpu}


def test_results_csv_has_the_unique_tokens_column(tmp_path):
    specs = expand(load_sweep(SWEEPS / "epochs_ci.py"))
    results, _ = write_results(tmp_path, "epochs", [(s, "pending", tmp_path / s.name)
                                                    for s in specs])
    header, *rows = results.read_text().splitlines()
    assert header.endswith("hp.train.lr,hp.train.warmup_steps,hp.data.unique_tokens")
    assert [row.rsplit(",", 1)[1] for row in rows] == ["4096", "4096", "4096", "8192", "16384"]


def test_tuned_batches_evaluate_the_same_held_out_rows():
    tuned = parse_sweep({"base": BASE, "kind": "n", "n_kind": "non_embedding", "family": FAMILY,
                         "model_sizes": [12e3], "tokens": 1e5,
                         "tune": {"train.batch_size": [4, 8, 16]}})
    configs = [s.config().train for s in expand(tuned)]
    assert [(t.batch_size, t.eval_batches) for t in configs] == [(4, 8), (8, 4), (16, 2)]
    odd = parse_sweep({"base": BASE, "kind": "n", "n_kind": "non_embedding", "family": FAMILY,
                       "model_sizes": [12e3], "tokens": 1e5, "tune": {"train.batch_size": [3]}})
    with pytest.raises(ConfigError, match="batch_size=3 does not divide the 32 held-out rows"):
        expand(odd)


# ---------------------------------------------------------------- the unique subset

@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> TokenShards:
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, 300, size=rng.integers(1, 60)).tolist() for _ in range(80)]
    out = tmp_path_factory.mktemp("shards")
    write_token_shards(docs, out, vocab_size=300, tokenizer_fingerprint="f", shard_max_tokens=500)
    return TokenShards(out)


def test_the_subset_holds_exactly_u_stream_tokens_and_nests(shards):
    small, large = UniqueTokens(shards, 320, seed=0), UniqueTokens(shards, 960, seed=0)
    assert small.num_tokens + small.num_docs == 320 and large.num_tokens + large.num_docs == 960
    for i in range(small.num_docs - 1):  # a prefix of the larger subset, whole documents
        assert np.array_equal(small.doc(i), large.doc(i))
    last = small.num_docs - 1
    assert np.array_equal(small.doc(last), large.doc(last)[:small.doc_lengths[last]])
    assert not np.array_equal(UniqueTokens(shards, 320, seed=1).doc(0), small.doc(0))
    with pytest.raises(DataError, match=r"data.unique_tokens=99999 must lie in \[1, "):
        UniqueTokens(shards, 99999, seed=0)


def test_every_epoch_repeats_the_subset_reshuffled(shards):
    subset = UniqueTokens(shards, 320, seed=0)
    rows = PackedRows(subset, seq_len=32, bos_id=1, eos_id=2, seed=5, num_epochs=3)
    assert rows.rows_per_epoch == 10  # U / seq_len: no padding
    epochs = [[rows[e * 10 + i] for i in range(10)] for e in range(3)]
    expected = Counter(t for i in range(subset.num_docs) for t in subset.doc(i).tolist())
    expected.update({2: subset.num_docs})
    for epoch in epochs:
        targets = np.concatenate([r["targets"] for r in epoch])
        assert Counter(targets.tolist()) == expected  # the same tokens, each once
        assert (np.concatenate([r["segment_ids"] for r in epoch]) > 0).all()
    firsts = [[r["inputs"][0] for r in epoch] for epoch in epochs]
    assert firsts[0] != firsts[1] != firsts[2]  # documents and rows reshuffled every epoch


def test_a_run_trains_on_its_unique_subset_and_evaluates_on_the_held_out_split(tmp_path):
    corpus = write_small_stdlib_corpus(tmp_path / "corpus", max_bytes=150_000)
    cfg = default_config()
    cfg.data.sources, cfg.data.seq_len, cfg.data.heldout_fraction = (str(corpus),), 64, 0.1
    cfg.data.unique_tokens = 1024
    data = build_run_data(cfg.data, 512, tmp_path / "data")
    batches = data.train_batches(8, 8)  # 2 epochs of 1,024 tokens in batches of 8 x 64
    seen = [next(batches)["targets"] for _ in range(4)]
    epoch_1, epoch_2 = np.concatenate(seen[:2]), np.concatenate(seen[2:])
    assert Counter(epoch_1.ravel().tolist()) == Counter(epoch_2.ravel().tolist())
    assert not np.array_equal(epoch_1, epoch_2)
    held_out = {tuple(data.heldout.doc(i).tolist()) for i in range(data.heldout.num_docs)}
    train = TokenShards(tmp_path / "data" / "data" / "train")
    subset = UniqueTokens(train, 1024, seed=cfg.data.seed)  # whole documents but the last
    assert not held_out & {tuple(subset.doc(i).tolist()) for i in range(subset.num_docs - 1)}
    cfg.data.unique_tokens = 10**9
    with pytest.raises(DataError, match="data.unique_tokens=1000000000 must lie in"):
        build_run_data(cfg.data, 512, tmp_path / "data").train_batches(8, 8)
