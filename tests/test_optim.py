"""Schedules, the weight-decay mask, clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.config import default_config
from lm.train.optim import clip_by_global_norm, lr_schedule, make_optimizer, warmup_note, weight_decay_mask


def train_cfg(**overrides):
    t = default_config().train
    t.update(dict(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1))
    t.update(overrides)
    return t


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    s = lr_schedule(train_cfg())
    assert float(s(0)) == 0.0
    np.testing.assert_allclose(float(s(5)), 0.5)
    np.testing.assert_allclose(float(s(10)), 1.0)
    np.testing.assert_allclose(float(s(55)), 0.1 + 0.9 * 0.5, rtol=1e-5)  # halfway down the cosine
    np.testing.assert_allclose(float(s(100)), 0.1, rtol=1e-5)


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_a_warmup_longer_than_the_run_is_clamped_to_the_run_with_a_note(schedule):
    t = train_cfg(steps=20, warmup_steps=50, schedule=schedule)
    s = lr_schedule(t)
    np.testing.assert_allclose([float(s(i)) for i in (0, 10, 20)], [0.0, 0.5, 1.0], rtol=1e-6)
    assert warmup_note(t) == (
        "train.warmup_steps=50 is more than train.steps=20: the learning rate warms up over all 20 "
        "steps and never decays (set --config.train.warmup_steps to choose)")
    assert warmup_note(train_cfg()) is None


def test_wsd_schedule_is_flat_then_decays_linearly():
    s = lr_schedule(train_cfg(schedule="wsd", decay_fraction=0.2))
    np.testing.assert_allclose([float(s(i)) for i in (10, 50, 79, 80)], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(float(s(90)), 0.55, rtol=1e-5)
    np.testing.assert_allclose(float(s(100)), 0.1, rtol=1e-5)


def test_decay_mask_spares_embeddings_and_norms_unless_asked():
    params = {"embed": 1, "head": 1, "final_norm": {"scale": 1},
              "blocks": {"attn": {"wq": 1}, "attn_norm": {"scale": 1}}}
    mask = weight_decay_mask(params, train_cfg())
    assert mask == {"embed": False, "head": True, "final_norm": {"scale": False},
                    "blocks": {"attn": {"wq": True}, "attn_norm": {"scale": False}}}
    mask = weight_decay_mask(params, train_cfg(decay_embeddings=True, decay_norms=True))
    assert all(v is True for v in [mask["embed"], mask["final_norm"]["scale"]])


@pytest.mark.parametrize("clip, expected_norm", [(0.5, 0.5), (0.0, 5.0), (10.0, 5.0)])
def test_global_norm_clipping_reaches_adam_moments(clip, expected_norm):
    t = train_cfg(clip_norm=clip, b1=0.9)
    params = {"w": jnp.zeros(2)}
    opt = make_optimizer(t, params, default_config().model)
    grads = {"w": jnp.array([3.0, 4.0])}  # norm 5
    _, state = opt.update(grads, opt.init(params), params)
    adam = [s for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "mu")) if hasattr(s, "mu")][0]
    seen_grad = adam.mu["w"] / (1 - 0.9)  # the first moment after one step is (1 - b1) g
    np.testing.assert_allclose(float(jnp.linalg.norm(seen_grad)), expected_norm, rtol=1e-5)


@pytest.mark.parametrize("grad", [[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [1e-30, 0.0]])
def test_clipping_factor_equals_optax_clipping(grad):
    updates = {"w": jnp.array(grad), "b": jnp.array([0.5 * g for g in grad])}
    ours, _ = clip_by_global_norm(1.0).update(updates, optax.EmptyState())
    reference, _ = optax.clip_by_global_norm(1.0).update(updates, optax.EmptyState())
    for key in updates:
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-6, atol=0)
