"""The reference peers of benchmarks/peers compute lm's model, and compare_peers.py runs.

Same parameter count as lm's `param_counts`, and, from lm's initial weights, the same
losses as lm's real train step for three steps (forward, clipping, AdamW and the lr
schedule agree).
"""

import importlib
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from flax import nnx

from lm.config import load_config
from lm.model.decoder import Decoder
from lm.scaling.counts import param_counts
from lm.train.state import build_model
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state, make_train_step

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# No warmup: lm's schedule starts at lr 0 after a warmup, which would hide step 1's update.
SHAPE = ["--config.train.batch_size=2", "--config.data.seq_len=16", "--config.train.warmup_steps=0"]


def _import(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def bench():
    return _import("train_step")


@pytest.fixture(scope="module")
def bare():
    return _import("peers.jax_bare")


@pytest.fixture(scope="module")
def torch_peer():
    pytest.importorskip("torch", reason="torch is not installed (the CI does not install it)")
    return _import("peers.torch_llama")


def tiny(bench, *extra: str):
    return load_config(bench.preset_path("tiny"), SHAPE + list(extra))


def zero_lm_params(m):
    """lm's parameter dict for config `m`, zeros of the right shapes (nothing compiled)."""
    abstract = nnx.state(nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(0)))).to_pure_dict()
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)


# tiny is GQA (4 heads, 2 kv heads) with a tied head; also untied, and an explicit head_dim.
VARIANTS = [[], ["--config.model.tie_embeddings=false"],
            ["--config.model.head_dim=8", "--config.model.num_kv_heads=1"]]


@pytest.mark.parametrize("extra", VARIANTS, ids=["tied-gqa", "untied", "head_dim8-mqa"])
def test_bare_has_lms_parameter_count(bench, bare, extra):
    cfg = tiny(bench, *extra)
    converted = bare.from_lm_params(zero_lm_params(cfg.model), cfg.model)
    shapes = jax.tree.leaves(bare.param_shapes(cfg.model), is_leaf=lambda x: isinstance(x, tuple))
    assert bare.num_params(converted) == sum(int(np.prod(s)) for s in shapes)
    assert bare.num_params(converted) == param_counts(cfg.model).total


@pytest.mark.parametrize("extra", VARIANTS, ids=["tied-gqa", "untied", "head_dim8-mqa"])
def test_torch_has_lms_parameter_count(bench, torch_peer, extra):
    cfg = tiny(bench, *extra)
    assert torch_peer.num_params(torch_peer.LlamaTorch(cfg.model)) == param_counts(cfg.model).total


def test_bare_rejects_weights_of_another_shape(bench, bare):
    cfg, other = tiny(bench), tiny(bench, "--config.model.d_ff=96")
    with pytest.raises(ValueError, match="same model config"):
        bare.from_lm_params(zero_lm_params(other.model), cfg.model)


def test_torch_rejects_weights_of_another_shape(bench, torch_peer):
    cfg, other = tiny(bench), tiny(bench, "--config.model.d_ff=96")
    with pytest.raises(ValueError, match=r"blocks.mlp.w_gate\[0\]"):
        torch_peer.load_lm_params(torch_peer.LlamaTorch(cfg.model), zero_lm_params(other.model))


UNSUPPORTED = ["model.compute_dtype=bfloat16", "train.grad_accum=2", "train.z_loss=0.0001",
               "model.remat=full"]


@pytest.mark.parametrize("field", UNSUPPORTED)
def test_bare_rejects_what_it_does_not_model(bench, bare, field):
    with pytest.raises(ValueError, match=f"'{field.split('=')[0]}'"):
        bare.check_supported(tiny(bench, f"--config.{field}"))


@pytest.mark.parametrize("field", UNSUPPORTED)
def test_torch_rejects_what_it_does_not_model(bench, torch_peer, field):
    with pytest.raises(ValueError, match=f"'{field.split('=')[0]}'"):
        torch_peer.check_supported(tiny(bench, f"--config.{field}"))


@pytest.fixture(scope="module")
def untied_run(bench):
    """lm's losses over three steps of an untied tiny model (the tied one is checked through
    compare_peers below), with its config, initial weights on the host and batches."""
    # Strong weight decay and a cosine over 4 steps make the decay mask and the schedule
    # show in the loss by step 3: dropping the mask, the decay, the clipping or the schedule
    # from the bare peer moved its third loss by 4e-4 to 5e-3 (the peers agree to ~1e-6).
    cfg = tiny(bench, "--config.model.tie_embeddings=false", "--config.train.weight_decay=1.0",
               "--config.train.steps=4")
    graphdef, params = build_model(cfg.model, cfg.train.seed)
    host_params = jax.tree.map(np.asarray, params)
    batches = bench.synthetic_batches(3, 2, 16, cfg.model.vocab_size, seed=1)
    optimizer = make_optimizer(cfg.train, params, cfg.model)
    state = init_train_state(params, optimizer)
    step = jax.jit(make_train_step(graphdef, optimizer, grad_accum=1, z_loss=0.0))
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[0] == pytest.approx(np.log(cfg.model.vocab_size), abs=0.1)
    assert float(metrics["grad_norm"]) > cfg.train.clip_norm  # clipping is exercised
    assert abs(losses[2] - losses[0]) > 1e-2  # the updates show in the loss
    return cfg, host_params, batches, losses


def test_bare_trains_exactly_like_lm(bare, untied_run):
    cfg, host_params, batches, lm_losses = untied_run
    params, opt_state, step = bare.build(cfg, host_params)
    losses = []
    for batch in batches:
        params, opt_state, loss = step(params, opt_state, batch["inputs"], batch["targets"])
        losses.append(float(loss))
    assert losses == pytest.approx(lm_losses, abs=1e-4)


def test_torch_trains_exactly_like_lm(torch_peer, untied_run):
    import torch

    cfg, host_params, batches, lm_losses = untied_run
    model, optimizer, scheduler = torch_peer.build(cfg, host_params)
    losses = []
    for batch in batches:
        inputs, targets = (torch.tensor(np.asarray(batch[k]), dtype=torch.int64)
                           for k in ("inputs", "targets"))
        losses.append(float(torch_peer.train_step(model, optimizer, scheduler, inputs, targets,
                                                  cfg.train.clip_norm)))
    assert losses == pytest.approx(lm_losses, abs=1e-4)


def test_compare_peers_end_to_end(bench, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    compare = importlib.import_module("compare_peers")
    out = tmp_path / "peers.json"
    assert compare.main(["--preset", "tiny", "--steps", "1", "--rounds", "1", "--batch-size", "2",
                         "--seq-len", "16", "--config.train.warmup_steps=0",
                         "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    [preset] = report["presets"]
    rows = {r["impl"]: r for r in preset["rows"]}
    expected = {"lm", "bare"} | ({"torch"} if compare.torch_llama is not None else set())
    assert set(rows) == expected
    assert (preset["batch_size"], preset["seq_len"]) == (2, 16)
    assert preset["peak_probes"][0] > 0 and preset["peak_flops"] == max(preset["peak_probes"])
    assert len(preset["peak_probes"]) == 1 and "probe" in preset["peak_source"]
    assert abs(rows["lm"]["last_loss"] - rows["lm"]["first_loss"]) > 1e-2  # it trained
    for name, row in rows.items():
        # Same weights, batches and optimizer: the same loss before and after 2 + 1 steps.
        assert row["first_loss"] == pytest.approx(rows["lm"]["first_loss"], abs=1e-4), name
        assert row["last_loss"] == pytest.approx(rows["lm"]["last_loss"], abs=1e-4), name
        assert row["tokens_per_s"] == pytest.approx(32 / row["median_step_s"])
        assert row["mfu"] == pytest.approx(preset["model_flops_per_token"] * 32 /
                                           (row["median_step_s"] * preset["peak_flops"]))
        assert len(row["step_s"]) == 1
    for peer in expected - {"lm"}:
        ratio = rows["lm"]["tokens_per_s"] / rows[peer]["tokens_per_s"]
        assert preset["ratios"][f"lm/{peer}"] == pytest.approx(ratio)


def test_compare_peers_rejects_unsupported_config(bench, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    compare = importlib.import_module("compare_peers")
    assert compare.main(["--preset", "tiny", "--config.train.grad_accum=2"]) == 2
    assert "train.grad_accum" in capsys.readouterr().err


def test_block_vs_torch_agrees_and_reports(torch_peer, monkeypatch, capsys):
    """One lm block (blockwise attention over 3 blocks, GQA) equals the PyTorch block on the
    same weights, else the script fails; the table has both rows and the ratios."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    block_vs_torch = importlib.import_module("block_vs_torch")
    assert block_vs_torch.main(["--preset", "tiny", "--rounds", "1", "--config.train.batch_size=2",
                                "--config.data.seq_len=24", "--config.model.attention=blockwise",
                                "--config.model.attention_block=8"]) == 0
    out = capsys.readouterr().out
    assert "attention=blockwise" in out and "outputs agree" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"lm", "torch"} <= set(lines) and "lm / torch" in out


def test_block_vs_torch_without_torch_says_so(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    block_vs_torch = importlib.import_module("block_vs_torch")
    monkeypatch.setattr(block_vs_torch, "torch", None)
    assert block_vs_torch.main(["--preset", "tiny"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err
