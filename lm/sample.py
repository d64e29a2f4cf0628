"""Autoregressive sampling with a KV cache: temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def filter_logits(logits_BxV: jax.Array, *, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Scale by temperature and mask (to -inf) tokens outside the top-k and the top-p mass."""
    logits = logits_BxV.astype(jnp.float32) / temperature
    if top_k:
        kth_B1 = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth_B1, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_desc = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
        kept = jnp.where(mass_before < top_p, sorted_desc, jnp.inf)
        threshold_B1 = jnp.min(kept, axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold_B1, -jnp.inf, logits)
    return logits


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    "max_new_tokens", "temperature", "top_k", "top_p"))
def generate(graphdef: nnx.GraphDef, params: Any, prompt_BxP: jax.Array, rng: jax.Array, *,
             max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> jax.Array:
    """Sample `max_new_tokens` tokens after each prompt row; returns [B, max_new_tokens].

    The prompt is run once through the model to fill the cache (prefill); then
    each new token attends to the cache. Temperature 0 is greedy decoding.
    """
    model = nnx.merge(graphdef, params)
    batch, prompt_len = prompt_BxP.shape
    cache = model.init_cache(batch, prompt_len + max_new_tokens)
    positions_BxP = jnp.broadcast_to(jnp.arange(prompt_len), (batch, prompt_len))
    logits, cache = model.decode(prompt_BxP, positions_BxP, cache)

    def pick(logits_BxV, key):
        if temperature == 0:
            return jnp.argmax(logits_BxV, axis=-1)
        filtered = filter_logits(logits_BxV, temperature=temperature, top_k=top_k, top_p=top_p)
        return jax.random.categorical(key, filtered, axis=-1)

    def next_token(carry, key):
        logits_BxV, cache, position = carry
        token_B = pick(logits_BxV, key)
        logits, cache = model.decode(token_B[:, None], jnp.full((batch, 1), position), cache)
        return (logits[:, -1], cache, position + 1), token_B

    keys = jax.random.split(rng, max_new_tokens)
    _, tokens_NxB = jax.lax.scan(next_token, (logits[:, -1], cache, prompt_len), keys)
    return tokens_NxB.T
