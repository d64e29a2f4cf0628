"""Next-token cross-entropy over packed batches, with optional z-loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
