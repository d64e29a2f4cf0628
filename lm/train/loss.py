"""Next-token cross-entropy over packed batches, with optional z-loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lm.model.layers import project
from lm.parallel.sharding import constrain


def cross_entropy_sums(logits_BxLxV: jax.Array, targets_BxL: jax.Array,
                       mask_BxL: jax.Array) -> dict[str, jax.Array]:
    """Sums over unmasked tokens of the negative log-likelihood and of log Z squared.

    Returned as sums with the token count so microbatches and hosts add up
    exactly; divide by `tokens` for means. Computed in float32.
    """
    logits = logits_BxLxV.astype(jnp.float32)
    log_z_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    mask = mask_BxL.astype(jnp.float32)
    return {
        "nll": jnp.sum((log_z_BxL - target_logit_BxL) * mask),
        "log_z_sq": jnp.sum(jnp.square(log_z_BxL) * mask),
        "tokens": jnp.sum(mask),
    }


def chunked_cross_entropy_sums(x_BxLxD: jax.Array, head_DxV: jax.Array, targets_BxL: jax.Array,
                               mask_BxL: jax.Array, chunk: int) -> dict[str, jax.Array]:
    """`cross_entropy_sums` of the logits `x @ head`, `chunk` positions at a time.

    The float32 logits of one chunk ([B, chunk, vocab]) exist at once instead of the
    whole [B, L, vocab]; the backward pass recomputes each chunk's logits (one extra
    head matmul) instead of storing them. Equal to the unchunked sums up to float
    summation order.
    """
    b, length, d = x_BxLxD.shape
    if length % chunk:
        raise ValueError(f"sequence length {length} is not a multiple of train.loss_chunk={chunk}")
    n = length // chunk

    def split(a):  # [B, L, ...] -> [n, B, chunk, ...]
        return jnp.swapaxes(a.reshape(b, n, chunk, *a.shape[2:]), 0, 1)

    @jax.checkpoint
    def chunk_sums(x_BxCxD, targets_BxC, mask_BxC):
        logits = project(x_BxCxD, head_DxV, preferred_element_type=jnp.float32)
        return cross_entropy_sums(constrain(logits, ("batch", "seq", "vocab")), targets_BxC, mask_BxC)

    def add(total, chunk_inputs):
        return jax.tree.map(jnp.add, total, chunk_sums(*chunk_inputs)), None

    zero = {"nll": jnp.zeros(()), "log_z_sq": jnp.zeros(()), "tokens": jnp.zeros(())}
    sums, _ = jax.lax.scan(add, zero, (split(x_BxLxD), split(targets_BxL), split(mask_BxL)))
    return sums
