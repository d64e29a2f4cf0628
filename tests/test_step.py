"""The train step: gradient accumulation, the non-finite guard, the eval step."""

import jax
import jax.numpy as jnp
import numpy as np

from lm.config import default_config
from lm.train.state import build_model
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state, make_eval_step, make_train_step
from tests.helpers import random_tokens, tiny_model_config


def setup(grad_accum=1, loss_chunk=0):
    m = tiny_model_config()
    t = default_config().train
    t.update(steps=10, warmup_steps=0, lr=1e-2, grad_accum=grad_accum)
    graphdef, params = build_model(m, 0)
    optimizer = make_optimizer(t, params, m)
    step = jax.jit(make_train_step(graphdef, optimizer, grad_accum=grad_accum, z_loss=1e-4,
                                   loss_chunk=loss_chunk))
    return graphdef, init_train_state(params, optimizer), step, m


def packed_batch(vocab, batch=4, length=16):
    tokens = random_tokens((batch, length + 1), vocab)
    segments = np.ones((batch, length), np.int32)
    segments[:, 10:] = 2
    segments[0, 13:] = 0  # padding
    positions = np.concatenate([np.arange(10), np.arange(length - 10)])[None].repeat(batch, 0)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": jnp.asarray(segments),
            "positions": jnp.asarray(positions, jnp.int32)}


def test_gradient_accumulation_equals_one_big_batch():
    _, state1, step1, m = setup(grad_accum=1)
    _, state2, step2, _ = setup(grad_accum=2)
    batch = packed_batch(m.vocab_size)
    for _ in range(3):
        state1, metrics1 = step1(state1, batch)
        state2, metrics2 = step2(state2, batch)
        np.testing.assert_allclose(metrics1["loss"], metrics2["loss"], rtol=1e-6)
        np.testing.assert_allclose(metrics1["grad_norm"], metrics2["grad_norm"], rtol=1e-5)
    assert float(metrics1["tokens"]) == 4 * 16 - 3  # padding carries no loss
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5),
                 state1["params"], state2["params"])


def test_chunked_loss_equals_the_full_logits_loss():
    _, state1, step1, m = setup()
    _, state2, step2, _ = setup(loss_chunk=4)  # 16 positions in 4 chunks
    batch = packed_batch(m.vocab_size)
    for _ in range(2):
        state1, metrics1 = step1(state1, batch)
        state2, metrics2 = step2(state2, batch)
        for key in ("loss", "z_loss", "grad_norm", "tokens"):
            np.testing.assert_allclose(metrics2[key], metrics1[key], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 state1["params"], state2["params"])


def test_non_finite_loss_skips_the_update():
    _, state, step, m = setup()
    batch = packed_batch(m.vocab_size)
    embed = state["params"]["embed"]
    state["params"]["embed"] = embed.at[int(batch["inputs"][0, 0])].set(jnp.nan)
    before = jax.tree.map(np.asarray, state)
    after, metrics = step(state, batch)
    assert int(metrics["finite"]) == 0 and not np.isfinite(float(metrics["loss"]))
    assert int(after["step"]) == 1
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), before["params"], after["params"])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), before["opt_state"], after["opt_state"])


def test_finite_step_updates_and_eval_sums_agree():
    graphdef, state, step, m = setup()
    batch = packed_batch(m.vocab_size)
    sums = jax.jit(make_eval_step(graphdef))(state["params"], batch)
    new_state, metrics = step(state, batch)
    assert int(metrics["finite"]) == 1
    np.testing.assert_allclose(float(sums["nll"] / sums["tokens"]), float(metrics["loss"]), rtol=1e-6)
    assert np.log(m.vocab_size) - 0.5 < float(metrics["loss"]) < np.log(m.vocab_size) + 0.5
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), state["params"], new_state["params"])
    assert all(jax.tree.leaves(changed))
