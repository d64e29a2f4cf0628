"""The decoder: shapes, causality, packing, RoPE, GQA, remat and dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lm.model.layers import apply_rope, attend, attend_blockwise, attention_mask, project
from tests.helpers import (forward, forward1, make_model, random_normal, random_tokens,
                           single_segment, tiny_model_config)


def make(**overrides):
    m = tiny_model_config(**overrides)
    return m, make_model(m)


def test_shapes_and_logical_names():
    m, model = make()
    tokens = random_tokens((3, 10), m.vocab_size)
    logits = forward1(model, tokens)
    assert logits.shape == (3, 10, m.vocab_size) and logits.dtype == jnp.float32
    names = {"/".join(map(str, path)): v.get_metadata()["out_sharding"]
             for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert names["embed"] == ("vocab", "embed")
    assert names["head"] == ("embed", "vocab")
    assert names["blocks/attn/wq"] == ("layers", "embed", "heads", "head_dim")
    assert names["blocks/attn/wk"] == ("layers", "embed", "kv_heads", "head_dim")
    assert names["blocks/attn/wo"] == ("layers", "heads", "head_dim", "embed")
    assert names["blocks/mlp/w_down"] == ("layers", "mlp", "embed")
    assert names["blocks/attn_norm/scale"] == ("layers", "embed")
    assert nnx.state(model, nnx.Param)["blocks"]["attn"]["wq"].shape == (2, 32, 4, 8)


def test_causality_future_tokens_do_not_change_past_logits():
    m, model = make()
    tokens = random_tokens((2, 12), m.vocab_size)
    changed = tokens.at[:, 7:].set((tokens[:, 7:] + 5) % m.vocab_size)
    a = forward1(model, tokens)
    b = forward1(model, changed)
    np.testing.assert_array_equal(a[:, :7], b[:, :7])
    assert not np.allclose(a[:, 7:], b[:, 7:])


def test_packed_documents_do_not_attend_to_each_other():
    m, model = make()
    doc_a, doc_b = random_tokens((1, 5), m.vocab_size, 1), random_tokens((1, 7), m.vocab_size, 2)
    packed = jnp.concatenate([doc_a, doc_b, jnp.zeros((1, 4), jnp.int32)], axis=1)
    segments = jnp.array([[1] * 5 + [2] * 7 + [0] * 4])
    positions = jnp.array([list(range(5)) + list(range(7)) + [0] * 4])
    logits = forward(model, packed, positions, segments)
    alone_a = forward1(model, doc_a)
    alone_b = forward1(model, doc_b)
    np.testing.assert_allclose(logits[:, :5], alone_a, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[:, 5:12], alone_b, atol=1e-5, rtol=1e-5)


def test_mask_is_causal_and_segmented():
    mask = attention_mask(jnp.array([[1, 1, 2, 2, 0]]))[0]
    expected = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0],
                         [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(mask, expected)


def test_rope_preserves_norm_and_encodes_relative_position():
    q = random_normal((1, 1, 1, 16), 0)
    k = random_normal((1, 1, 1, 16), 1)

    def score(pq, pk):
        rq = apply_rope(q, jnp.array([[pq]]), 10000.0)
        rk = apply_rope(k, jnp.array([[pk]]), 10000.0)
        return float(jnp.sum(rq * rk))

    rotated = apply_rope(q, jnp.array([[37]]), 10000.0)
    np.testing.assert_allclose(jnp.linalg.norm(rotated), jnp.linalg.norm(q), rtol=1e-5)
    np.testing.assert_allclose(score(3, 1), score(12, 10), rtol=1e-4)  # depends on pq - pk only
    assert abs(score(3, 1) - score(3, 2)) > 1e-3
    np.testing.assert_array_equal(apply_rope(q, jnp.array([[0]]), 10000.0), q)  # position 0: identity


def test_gqa_equals_mha_with_repeated_kv_heads():
    batch, length, heads, kv_heads, dim = 2, 6, 4, 2, 8
    q = random_normal((batch, length, heads, dim), 0)
    k = random_normal((batch, length, kv_heads, dim), 1)
    v = random_normal((batch, length, kv_heads, dim), 2)
    mask = attention_mask(jnp.ones((batch, length), jnp.int32))
    grouped = attend(q, k, v, mask)
    repeat = heads // kv_heads
    full = attend(q, jnp.repeat(k, repeat, axis=2), jnp.repeat(v, repeat, axis=2), mask)
    np.testing.assert_allclose(grouped, full, atol=1e-6)


@pytest.mark.parametrize("length,block", [(12, 4), (10, 4), (7, 16), (9, 1)])
def test_blockwise_attention_equals_the_full_square(length, block):
    """Skipping the key blocks above the diagonal changes nothing: values and gradients,
    with packed segments, GQA, a ragged last block and a block longer than the sequence."""
    batch, heads, kv_heads, dim = 2, 4, 2, 8
    q = random_normal((batch, length, heads, dim), 0)
    k = random_normal((batch, length, kv_heads, dim), 1)
    v = random_normal((batch, length, kv_heads, dim), 2)
    segments = jnp.ones((batch, length), jnp.int32).at[1, length // 2:].set(2)
    mask = attention_mask(segments)
    blockwise = jax.jit(lambda q, k, v: attend_blockwise(q, k, v, mask, block))
    full = jax.jit(lambda q, k, v: attend(q, k, v, mask))
    np.testing.assert_allclose(blockwise(q, k, v), full(q, k, v), rtol=1e-6, atol=1e-6)
    weights = random_normal((batch, length, heads, dim), 3)
    grads = [jax.jit(jax.grad(lambda q, k, v: jnp.sum(f(q, k, v) * weights), argnums=(0, 1, 2)))(q, k, v)
             for f in (blockwise, full)]
    for blockwise, full in zip(*grads):
        np.testing.assert_allclose(blockwise, full, rtol=1e-5, atol=1e-6)


def test_project_is_the_einsum_it_replaces():
    x = random_normal((2, 5, 6), 0)
    np.testing.assert_allclose(project(x, random_normal((6, 3, 4), 1)),
                               jnp.einsum("bld,dhk->blhk", x, random_normal((6, 3, 4), 1)), rtol=1e-6)
    heads = random_normal((2, 5, 3, 4), 2)
    np.testing.assert_allclose(project(heads, random_normal((3, 4, 6), 3), contract=2),
                               jnp.einsum("blhk,hkd->bld", heads, random_normal((3, 4, 6), 3)),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"cannot contract x\(2, 5, 6\) with w\(5, 3\)"):
        project(x, jnp.zeros((5, 3)))


def test_gqa_model_equals_mha_model_with_repeated_weights():
    m_gqa, gqa = make(num_kv_heads=2)
    m_mha, mha = make(num_kv_heads=4)
    params = nnx.to_pure_dict(nnx.state(gqa, nnx.Param))
    mha_params = jax.tree.map(lambda x: x, params)
    for name in ("wk", "wv"):
        mha_params["blocks"]["attn"][name] = jnp.repeat(params["blocks"]["attn"][name], 2, axis=2)
    nnx.update(mha, mha_params)
    tokens = random_tokens((2, 9), m_gqa.vocab_size)
    np.testing.assert_allclose(forward1(gqa, tokens), forward1(mha, tokens),
                               atol=1e-5, rtol=1e-5)


def test_unrolled_layer_scan_equals_the_rolled_one():
    m, model = make()
    _, unrolled = make(scan_unroll=2)  # both layers in one scan iteration
    tokens = random_tokens((2, 8), m.vocab_size)
    np.testing.assert_allclose(forward1(unrolled, tokens), forward1(model, tokens), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", [{"attention": "xla"},
                                    {"attention": "blockwise", "attention_block": 5}])
def test_attention_kernels_equal_the_einsum_attention(kernel):
    m, model = make()
    _, fused = make(**kernel)  # same seed, same parameters; GQA (4 heads, 2 kv heads)
    tokens = random_tokens((3, 12), m.vocab_size)
    positions = jnp.broadcast_to(jnp.arange(12), (3, 12))
    segments = jnp.ones((3, 12), jnp.int32).at[1, 5:].set(2)  # two packed documents

    def loss(model):
        return jnp.mean(forward(model, tokens, positions, segments) ** 2)

    np.testing.assert_allclose(forward(fused, tokens, positions, segments),
                               forward(model, tokens, positions, segments), rtol=1e-5, atol=1e-5)
    g_einsum = nnx.to_pure_dict(nnx.state(nnx.jit(nnx.grad(loss))(model)))
    g_fused = nnx.to_pure_dict(nnx.state(nnx.jit(nnx.grad(loss))(fused)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g_einsum, g_fused)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_gives_the_same_loss_and_gradients(policy):
    m, model = make()
    _, remat_model = make(remat=policy)
    tokens = random_tokens((2, 8), m.vocab_size)

    def loss(model):
        return jnp.mean(model(tokens, *single_segment(2, 8)) ** 2)

    g_plain = nnx.to_pure_dict(nnx.state(nnx.jit(nnx.grad(loss))(model)))
    g_remat = nnx.to_pure_dict(nnx.state(nnx.jit(nnx.grad(loss))(remat_model)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g_plain, g_remat)


def test_bf16_compute_with_f32_params():
    m, model = make(compute_dtype="bfloat16")
    _, f32 = make()
    assert nnx.state(model, nnx.Param)["embed"].dtype == jnp.float32
    tokens = random_tokens((2, 8), m.vocab_size)
    low = forward1(model, tokens)
    high = forward1(f32, tokens)
    assert low.dtype == jnp.float32  # logits are returned in f32 for the loss
    assert bool(jnp.all(jnp.isfinite(low)))
    np.testing.assert_allclose(low, high, atol=3e-2)
    assert not np.array_equal(low, high)  # the computation really ran in bf16


def test_tied_embeddings_share_the_input_matrix():
    m, model = make(tie_embeddings=True)
    assert model.head is None
    tokens = random_tokens((1, 4), m.vocab_size)
    g = nnx.jit(nnx.grad(lambda mod: mod(tokens, *single_segment(1, 4))[0, -1, 3]))(model)
    assert float(jnp.abs(g.embed[...][3]).sum()) > 0  # the head gradient flows into embed


def test_kv_cache_decoding_matches_the_full_forward_pass():
    m, model = make()
    tokens = random_tokens((2, 10), m.vocab_size)
    full = forward1(model, tokens)
    cache = model.init_cache(2, 16)
    positions, _ = single_segment(2, 10)
    decode = nnx.jit(lambda model, *args: model.decode(*args))
    prefill, cache = decode(model, tokens[:, :6], positions[:, :6], cache)
    np.testing.assert_allclose(prefill, full[:, :6], atol=1e-5)
    for i in range(6, 10):
        step, cache = decode(model, tokens[:, i:i + 1], positions[:, i:i + 1], cache)
        np.testing.assert_allclose(step[:, 0], full[:, i], atol=1e-5)
