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


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("max_new_tokens",))
def greedy_until(graphdef: nnx.GraphDef, params: Any, prompts_BxP: jax.Array, lengths_B: jax.Array,
                 stop_ids_S: jax.Array, *, max_new_tokens: int) -> jax.Array:
    """Greedy continuations of prompts of different lengths; returns [B, max_new_tokens].

    Row b's prompt is ``prompts_BxP[b, :lengths_B[b]]`` (right-padded). Each row keeps its
    own KV cache (the batch is a vmap over rows), whose next free slot after the prefill is
    the row's own length: generated tokens overwrite the padding, and the causal mask (key
    slot <= query position) hides the padding not yet overwritten. Decoding stops early
    once every row has produced one of `stop_ids_S`; tokens after a row's stop are
    unspecified (callers cut there).
    """
    model = nnx.merge(graphdef, params)
    batch, prompt_len = prompts_BxP.shape
    cache_len = prompt_len + max_new_tokens

    def prefill(prompt_P, length):
        cache = model.init_cache(1, cache_len)
        logits_1xPxV, cache = model.decode(prompt_P[None], jnp.arange(prompt_len)[None], cache)
        return logits_1xPxV[0, length - 1], cache._replace(index=jnp.full_like(cache.index, length))

    def decode_one(token, position, cache):
        logits_1x1xV, cache = model.decode(token[None, None], position[None, None], cache)
        return logits_1x1xV[0, 0], cache

    def step(carry):
        t, tokens_BxN, logits_BxV, cache, done_B = carry
        token_B = jnp.argmax(logits_BxV, axis=-1).astype(tokens_BxN.dtype)
        tokens_BxN = tokens_BxN.at[:, t].set(token_B)
        done_B = done_B | jnp.isin(token_B, stop_ids_S)
        logits_BxV, cache = jax.vmap(decode_one)(token_B, lengths_B + t, cache)
        return t + 1, tokens_BxN, logits_BxV, cache, done_B

    def running(carry):
        t, _, _, _, done_B = carry
        return (t < max_new_tokens) & ~jnp.all(done_B)

    logits_BxV, cache = jax.vmap(prefill)(prompts_BxP, lengths_B)
    tokens_BxN = jnp.zeros((batch, max_new_tokens), prompts_BxP.dtype)
    start = (0, tokens_BxN, logits_BxV, cache, jnp.zeros((batch,), bool))
    return jax.lax.while_loop(running, step, start)[1]
