"""Sampling filters and KV-cache generation."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lm.sample import filter_logits, generate
from tests.helpers import forward1, make_model, tiny_model_config

LOGITS = jnp.log(jnp.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))


def kept(logits):
    return np.isfinite(np.asarray(logits[0])).tolist()


def test_top_k_keeps_the_k_most_likely():
    assert kept(filter_logits(LOGITS, temperature=1.0, top_k=2, top_p=1.0)) == [True, True, False, False, False]


def test_top_p_keeps_the_smallest_set_reaching_p():
    # 0.5 + 0.2 = 0.7 < 0.8, so the third token (reaching 0.85) is needed too.
    assert kept(filter_logits(LOGITS, temperature=1.0, top_k=0, top_p=0.8)) == [True, True, True, False, False]
    assert kept(filter_logits(LOGITS, temperature=1.0, top_k=0, top_p=0.5)) == [True, False, False, False, False]
    assert kept(filter_logits(LOGITS, temperature=1.0, top_k=0, top_p=1.0)) == [True] * 5


def test_temperature_scales_logits():
    np.testing.assert_allclose(filter_logits(LOGITS, temperature=0.5, top_k=0, top_p=1.0), LOGITS / 0.5)


def test_greedy_generation_equals_argmax_of_the_full_forward_pass():
    m = tiny_model_config()
    model = make_model(m)
    graphdef, params = nnx.split(model)
    prompt = jnp.array([[1, 5, 9, 3]], jnp.int32)
    tokens = generate(graphdef, params, prompt, jax.random.key(0), max_new_tokens=6,
                      temperature=0.0, top_k=0, top_p=1.0)
    sequence = prompt
    for _ in range(6):  # the same decoding without a cache, one full forward pass per token
        next_token = jnp.argmax(forward1(model, sequence)[:, -1], axis=-1)
        sequence = jnp.concatenate([sequence, next_token[:, None]], axis=1)
    np.testing.assert_array_equal(tokens, sequence[:, 4:])


def test_sampling_respects_top_k_and_the_seed():
    m = tiny_model_config()
    graphdef, params = nnx.split(make_model(m))
    prompt = jnp.ones((64, 2), jnp.int32)
    kw = dict(max_new_tokens=1, temperature=1.0, top_k=3, top_p=1.0)
    first = generate(graphdef, params, prompt, jax.random.key(1), **kw)
    again = generate(graphdef, params, prompt, jax.random.key(1), **kw)
    np.testing.assert_array_equal(first, again)
    allowed = jax.lax.top_k(forward1(make_model(m), prompt)[0, -1], 3)[1]
    assert set(np.asarray(first[:, 0]).tolist()) <= set(np.asarray(allowed).tolist())
    assert len(set(np.asarray(first[:, 0]).tolist())) > 1  # it samples, not argmax
