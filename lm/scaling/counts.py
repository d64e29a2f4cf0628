"""Parameter and FLOP counts of a decoder config: pure functions on `cfg.model`.

Conventions (say which one a number uses; they move fitted exponents):
- embedding parameters: the input embedding plus the output head when it is
  not tied. Kaplan et al. (2020) N is the non-embedding count; Chinchilla
  (Hoffmann et al. 2022) counts every parameter.
- FLOPs per token: `6 * N` (N of the caller's choice), or the exact count of
  Chinchilla appendix F: embeddings (as a one-hot matmul), QKV projections,
  attention logits, softmax, attention-value product, output projection,
  MLP, output head, with backward = 2x forward. Here the MLP is SwiGLU (three
  matrices, not two) and K/V projections use `num_kv_heads`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from lm.config import head_dim


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int
    non_embedding: int


def param_counts(m: ml_collections.ConfigDict) -> ParamCounts:
    """Exact parameter counts of `Decoder(m)` (norm scales included in non-embedding)."""
    d, k = m.d_model, head_dim(m)
    attention = d * m.num_heads * k * 2 + d * m.num_kv_heads * k * 2
    mlp = 3 * d * m.d_ff
    per_layer = attention + mlp + 2 * d
    non_embedding = m.num_layers * per_layer + d  # + final norm
    embedding = m.vocab_size * d * (1 if m.tie_embeddings else 2)
    return ParamCounts(non_embedding + embedding, embedding, non_embedding)


def forward_flops_per_token(m: ml_collections.ConfigDict, seq_len: int, *,
                            causal_half: bool = False) -> dict[str, float]:
    """Forward FLOPs per token by component, after Chinchilla appendix F.

    Attention logits, softmax and the attention-value product grow with
    `seq_len`; with `causal_half` they are halved, counting only the
    unmasked half of the causal square (the convention MaxText's MFU uses).
    """
    d, k, h, kv = m.d_model, head_dim(m), m.num_heads, m.num_kv_heads
    square = seq_len / 2 if causal_half else seq_len
    per_layer = {
        "qkv": 2 * d * k * (h + 2 * kv),
        "logits": 2 * square * k * h,
        "softmax": 3 * h * square,
        "attention_values": 2 * square * k * h,
        "output_projection": 2 * k * h * d,
        "mlp": 2 * 3 * d * m.d_ff,
    }
    counts = {"embedding": 2 * m.vocab_size * d}
    counts.update({name: m.num_layers * value for name, value in per_layer.items()})
    counts["head"] = 2 * d * m.vocab_size
    return counts


def train_flops_per_token(m: ml_collections.ConfigDict, seq_len: int, *,
                          causal_half: bool = False, embedding_lookup: bool = True) -> float:
    """Exact training FLOPs per token: 3x the forward count (backward = 2x forward).

    `embedding_lookup=False` leaves out the one-hot embedding matmul, which
    an implementation does as a gather; model-FLOPs utilisation uses that.
    """
    forward = forward_flops_per_token(m, seq_len, causal_half=causal_half)
    if not embedding_lookup:
        forward.pop("embedding")
    return 3.0 * sum(forward.values())


def six_n_flops_per_token(m: ml_collections.ConfigDict, *, non_embedding: bool = True) -> float:
    """The 6N approximation of training FLOPs per token (Kaplan uses non-embedding N)."""
    counts = param_counts(m)
    return 6.0 * (counts.non_embedding if non_embedding else counts.total)


def mfu_flops_per_token(m: ml_collections.ConfigDict, seq_len: int) -> float:
    """The model FLOPs per token the trainer's MFU uses: exact count, causal attention
    counted as half, no embedding lookup (FLOPs the model needs, not those XLA runs)."""
    return train_flops_per_token(m, seq_len, causal_half=True, embedding_lookup=False)
