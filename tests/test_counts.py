"""Parameter and FLOP counts against the real parameter tree, the formulas and XLA."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lm.config import load_config
from lm.model.decoder import Decoder
from lm.scaling.counts import (forward_flops_per_token, mfu_flops_per_token, param_counts,
                               six_n_flops_per_token, train_flops_per_token)
from tests.helpers import single_segment, tiny_model_config


def tree_size(m) -> int:
    abstract = nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


@pytest.mark.parametrize("overrides", [
    {}, {"tie_embeddings": True}, {"num_kv_heads": 1}, {"head_dim": 12}, {"num_layers": 5, "d_ff": 80},
])
def test_param_counts_equal_the_parameter_tree(overrides):
    m = tiny_model_config(**overrides)
    counts = param_counts(m)
    assert counts.total == tree_size(m)
    assert counts.embedding == m.vocab_size * m.d_model * (1 if m.tie_embeddings else 2)
    assert counts.total == counts.embedding + counts.non_embedding


@pytest.mark.parametrize("preset", ["tiny", "small", "llama_1b", "llama_7b"])
def test_presets_count_as_their_tree(preset):
    cfg = load_config(f"experiments/configs/{preset}.py")
    assert param_counts(cfg.model).total == tree_size(cfg.model)


def test_llama_7b_preset_has_the_published_parameter_count():
    cfg = load_config("experiments/configs/llama_7b.py")
    assert param_counts(cfg.model).total == 6_738_415_616  # LLaMA-2-7B
    tiny = param_counts(load_config("experiments/configs/tiny.py").model).total
    assert 80_000 <= tiny <= 120_000


def test_flops_follow_chinchilla_appendix_f_by_hand():
    m = tiny_model_config(vocab_size=100, d_model=16, num_layers=3, num_heads=4, num_kv_heads=4,
                          d_ff=40)
    seq = 10
    by_hand = {
        "embedding": 2 * 100 * 16,
        "qkv": 3 * 2 * 3 * 16 * 16,           # layers x 2 x 3 x d x (k x heads)
        "logits": 3 * 2 * 10 * 16,            # layers x 2 x seq x (k x heads)
        "softmax": 3 * 3 * 4 * 10,            # layers x 3 x heads x seq
        "attention_values": 3 * 2 * 10 * 16,
        "output_projection": 3 * 2 * 16 * 16,
        "mlp": 3 * 2 * 3 * 16 * 40,           # SwiGLU: three d x ffw matrices
        "head": 2 * 16 * 100,
    }
    assert forward_flops_per_token(m, seq) == by_hand
    assert train_flops_per_token(m, seq) == 3 * sum(by_hand.values())
    half = forward_flops_per_token(m, seq, causal_half=True)
    assert half["logits"] == by_hand["logits"] / 2 and half["softmax"] == by_hand["softmax"] / 2
    assert mfu_flops_per_token(m, seq) == 3 * (sum(half.values()) - by_hand["embedding"])
    assert six_n_flops_per_token(m) == 6 * param_counts(m).non_embedding
    assert six_n_flops_per_token(m, non_embedding=False) == 6 * param_counts(m).total


def test_forward_count_matches_xla_cost_analysis():
    """XLA's count of the compiled forward pass agrees with the formula's matmul terms.

    One layer: XLA's cost analysis counts a scanned loop body once, not per iteration.
    """
    m = tiny_model_config(vocab_size=256, d_model=64, num_layers=1, num_heads=4, num_kv_heads=2,
                          d_ff=192)
    batch, seq = 2, 32
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(0))))
    tokens = jnp.zeros((batch, seq), jnp.int32)
    forward = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t, *single_segment(batch, seq)))
    cost = forward.lower(state, tokens).compile().cost_analysis()
    xla_flops = cost["flops"] if isinstance(cost, dict) else cost[0]["flops"]
    counts = forward_flops_per_token(m, seq)
    matmuls = sum(v for k, v in counts.items() if k not in ("embedding", "softmax")) * batch * seq
    assert matmuls <= xla_flops <= 1.05 * matmuls
