"""muP (lm/model/mup.py): the proxy is SP, the scalings, the optimizer's multipliers, the HF
fold, the config checks and the coordinate check's slopes."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lm.config import ConfigError, default_config, load_config, validate
from lm.convert.from_hf import convert_from_hf
from lm.convert.to_hf import convert_to_hf, mup_fold_factors
from lm.convert.workdir import write_workdir
from lm.data.tokenizer import train_tokenizer
from lm.model import mup
from lm.train.optim import make_optimizer
from lm.train.state import build_model, read_run_config, restore_params
from tests.helpers import forward1, random_tokens, stdlib_texts, tiny_model_config, write_small_stdlib_corpus


def mup_config(**overrides):
    m = tiny_model_config(**overrides)
    m.update(parametrization="mup")
    return m


def train_config(**overrides):
    t = default_config().train
    t.update(steps=10, warmup_steps=0, lr=1e-2, weight_decay=0.1, **overrides)
    return t


def leaves(params) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}


def one_update(optimizer, grads, params, steps: int = 1):
    """The optimizer's update after `steps` updates with the same gradients, jitted."""
    def run(grads, params):
        state = optimizer.init(params)
        for _ in range(steps):
            updates, state = optimizer.update(grads, state, params)
        return updates
    return jax.jit(run)(grads, params)


def test_at_the_proxy_width_mup_is_sp():
    sp = tiny_model_config()
    at_proxy = mup_config(mup_base_width=sp.d_model, mup_base_head_dim=sp.d_model // sp.num_heads)
    g_sp, p_sp = build_model(sp, 0)
    g_mup, p_mup = build_model(at_proxy, 0)
    for key, value in leaves(p_sp).items():
        np.testing.assert_array_equal(leaves(p_mup)[key], value)
    tokens = random_tokens((2, 16), sp.vocab_size)
    np.testing.assert_array_equal(forward1(nnx.merge(g_mup, p_mup), tokens),
                                  forward1(nnx.merge(g_sp, p_sp), tokens))
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.01, p_sp)
    t = train_config()
    u_sp, u_mup = (one_update(make_optimizer(t, p, m), grads, p)
                   for m, p in ((sp, p_sp), (at_proxy, p_mup)))
    for key, value in leaves(u_sp).items():
        np.testing.assert_allclose(leaves(u_mup)[key], value, rtol=1e-6)


def test_hidden_matrices_get_the_scaled_init_and_learning_rate_the_rest_do_not():
    m = mup_config(d_model=128, num_heads=4, num_kv_heads=4, d_ff=512, mup_base_width=32)
    assert mup.width_multiplier(m) == 4.0
    _, params = build_model(m, 0)
    multipliers = leaves(mup.lr_multipliers(params, m))
    expected = {"['blocks']['attn']['wq']": 0.25, "['blocks']['attn']['wo']": 0.25,
                "['blocks']['mlp']['w_down']": 0.25, "['blocks']['mlp']['w_up']": 0.25,
                "['embed']": 1.0, "['head']": 1.0, "['final_norm']['scale']": 1.0,
                "['blocks']['attn_norm']['scale']": 1.0}
    assert {k: float(multipliers[k]) for k in expected} == expected
    stds = {k: float(v.std()) for k, v in leaves(params).items()}
    assert stds["['embed']"] == pytest.approx(0.02, rel=0.03)  # SP's init
    assert stds["['head']"] == pytest.approx(0.02, rel=0.03)  # the multiplier scales it instead
    assert stds["['blocks']['attn']['wq']"] == pytest.approx(0.01, rel=0.03)  # 0.02 / sqrt(4)
    assert stds["['blocks']['mlp']['w_down']"] == pytest.approx(0.01 / math.sqrt(2 * 2), rel=0.03)
    assert mup.output_multiplier(m) == 0.25
    assert mup.attention_scale(m) == pytest.approx(math.sqrt(8) / 32)  # base head dim 32 // 4


def test_adam_updates_of_hidden_matrices_are_divided_by_the_width_multiplier():
    m = mup_config(d_model=64, num_heads=4, num_kv_heads=4, d_ff=128, mup_base_width=16)
    sp = tiny_model_config(d_model=64, num_heads=4, num_kv_heads=4, d_ff=128)
    _, params = build_model(m, 0)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.003), params)
    t = train_config(clip_norm=0.0)
    # past the first step, with weight decay on the matrices
    updates = {name: leaves(one_update(make_optimizer(t, params, model), grads, params, steps=2))
               for name, model in (("sp", sp), ("mup", m))}
    for key, value in updates["sp"].items():
        factor = 0.25 if any(n in key for n in mup.HIDDEN_MATRICES) else 1.0
        np.testing.assert_allclose(updates["mup"][key], value * factor, rtol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(stdlib_texts(), tmp_path_factory.mktemp("tok"), vocab_size=384)


def test_to_hf_folds_the_multipliers_so_a_plain_llama_gives_the_same_logits(tmp_path, tokenizer):
    cfg = default_config()
    cfg.model = mup_config(vocab_size=384, max_seq_len=128, d_model=64, num_heads=4, num_kv_heads=2,
                           d_ff=96, mup_base_width=16)
    cfg.data.tokenizer_path = str(tokenizer.path)
    graphdef, params = build_model(cfg.model, 3)
    write_workdir(validate(cfg), params, tmp_path / "run", {"test": "mup"})
    factors = mup_fold_factors(cfg.model)
    assert factors == {"head": 0.25, "wq": pytest.approx(math.sqrt(4 / 16))}  # base head dim 4
    convert_to_hf(tmp_path / "run", tmp_path / "hf", max_shard_bytes=2**30)
    convert_from_hf(tmp_path / "hf", tmp_path / "back")
    back = read_run_config(tmp_path / "back")
    assert back.model.parametrization == "sp"
    g_back, p_back, _ = restore_params(tmp_path / "back", back)
    tokens = random_tokens((2, 24), 384, seed=5)
    want = forward1(nnx.merge(graphdef, params), tokens)
    np.testing.assert_allclose(forward1(nnx.merge(g_back, p_back), tokens), want, rtol=2e-5, atol=2e-6)


def test_a_tied_mup_model_is_refused_by_to_hf_before_anything_is_written(tmp_path, tokenizer):
    cfg = default_config()
    cfg.model = mup_config(vocab_size=384, max_seq_len=128, tie_embeddings=True, mup_base_width=16)
    cfg.data.tokenizer_path = str(tokenizer.path)
    write_workdir(validate(cfg), build_model(cfg.model, 0)[1], tmp_path / "run", {"test": "mup"})
    with pytest.raises(ConfigError) as err:
        convert_to_hf(tmp_path / "run", tmp_path / "hf", max_shard_bytes=2**30)
    assert str(err.value) == (
        "model.parametrization='mup' with model.tie_embeddings=true cannot be exported: the output "
        "multiplier would have to be folded into the embedding the head shares; train muP models "
        "with tie_embeddings=false to export them")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("field, value, message", [
    ("mup_base_width", 0, "config field 'model.mup_base_width': must be the proxy model's d_model "
     "(> 0) under muP, got 0; tune the learning rate at that width, then widen"),
    ("mup_base_head_dim", -1, "config field 'model.mup_base_head_dim': must be >= 0 (0: "
     "mup_base_width // num_heads), got -1"),
    ("parametrization", "ntk", "config field 'model.parametrization': 'ntk' is not one of sp, mup"),
])
def test_bad_mup_fields_are_named(field, value, message):
    cfg = default_config()
    cfg.model.update(parametrization="mup", mup_base_width=64)
    cfg.model[field] = value
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value) == message


@pytest.fixture(scope="module")
def coord_report(tmp_path_factory):
    from lm.train.coord_check import coord_check
    root = tmp_path_factory.mktemp("coord")
    corpus = write_small_stdlib_corpus(root / "corpus", max_bytes=120_000)
    config = {"model": {"vocab_size": 512, "d_model": 32, "num_layers": 1, "num_heads": 2,
                        "num_kv_heads": 2, "d_ff": 128, "max_seq_len": 64},
              "data": {"sources": [str(corpus)], "seq_len": 32, "prefetch": 0, "heldout_fraction": 0.2},
              "train": {"batch_size": 4, "lr": 2e-2}}
    (root / "cfg.py").write_text(f"def get_config():\n    return {config!r}\n")
    return coord_check(load_config(root / "cfg.py"), [32, 64, 128], 3, root / "out",
                       progress=False), root / "out"


def test_coord_check_mup_activations_are_flat_in_width_and_sp_grow(coord_report):
    report, out = coord_report
    assert json.loads((out / "coord_check.json").read_text())["widths"] == [32, 64, 128]
    assert (out / "coord_check.png").stat().st_size > 10_000
    assert report["activations"] == ["embedding", "layer0.attn", "layer0.mlp", "layer0.residual", "logits"]
    sp, mup_slopes = report["final_step_slopes"]["sp"], report["final_step_slopes"]["mup"]
    # after 2 updates, the residual stream and the logits: flat under muP, growing under SP
    # (measured: muP -0.09 and 0.09, SP 1.59 and 1.41)
    assert abs(mup_slopes["layer0.residual"]) + abs(mup_slopes["logits"]) < 0.5
    assert sp["layer0.residual"] > 0.7 and sp["logits"] > 0.7
    for branch in ("layer0.attn", "layer0.mlp"):  # SP's branches grow ~ width^1.2-2.3; muP's do not
        assert sp[branch] > 1.0 and mup_slopes[branch] < 0.25
    # at the proxy width the two parametrizations are one model
    assert report["rms"]["sp"]["32"] == report["rms"]["mup"]["32"]


def test_coord_check_cli_names_a_bad_width(tmp_path, capsys):
    from lm.cli import main
    assert main(["mup", "coord-check", "--widths", "30,64", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "lm mup: error: --widths: width 30 does not make a valid model: config field "
        "'model.num_heads': 4 heads do not divide d_model=30; choose a divisor of d_model or set "
        "model.head_dim explicitly")



def test_a_mup_run_resumes_bit_for_bit_and_samples(tmp_path, capsys):
    from lm.cli import main
    from lm.train.loop import train
    from lm.train.metrics import read_metrics
    corpus = write_small_stdlib_corpus(tmp_path / "corpus", max_bytes=120_000)
    args = [f"--config.data.sources=['{corpus}']", "--config.data.heldout_fraction=0.2",
            "--config.data.seq_len=32", "--config.model.vocab_size=512", "--config.model.d_model=64",
            "--config.model.num_layers=1", "--config.model.num_heads=2", "--config.model.num_kv_heads=2",
            "--config.model.d_ff=128", "--config.model.max_seq_len=64", "--config.model.parametrization=mup",
            "--config.model.mup_base_width=32", "--config.train.batch_size=4",
            "--config.train.schedule=constant", "--config.train.warmup_steps=0",
            "--config.train.checkpoint_every=3", "--config.train.eval_every=3",
            "--config.train.eval_batches=1", "--config.data.prefetch=0"]
    train(load_config(None, args + ["--config.train.steps=6"]), tmp_path / "straight")
    train(load_config(None, args + ["--config.train.steps=3"]), tmp_path / "resumed")
    train(load_config(None, args + ["--config.train.steps=6"]), tmp_path / "resumed")
    losses = {name: [(r["step"], r["loss"]) for r in read_metrics(tmp_path / name / "metrics.jsonl")]
              for name in ("straight", "resumed")}
    assert [s for s, _ in losses["resumed"]] == [1, 2, 3, 4, 5, 6]
    assert losses["resumed"] == losses["straight"]
    capsys.readouterr()
    assert main(["sample", "--workdir", str(tmp_path / "resumed"), "--prompt", "def ",
                 "--max-new-tokens", "8", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("--- sample (step 6) ---\ndef ")
