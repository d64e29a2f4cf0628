"""The jitted train and eval steps on pure pytrees.

The train state is a dict `{"step", "params", "opt_state"}` of arrays, so
jit, sharding and orbax see plain pytrees; the model is rebuilt from its
graph definition inside the step (a trace-time cost only).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lm.parallel.pipeline import Pipeline
from lm.train.loss import chunked_cross_entropy_sums, cross_entropy_sums

Batch = dict[str, jax.Array]
TrainState = dict[str, Any]


def init_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt_state": optimizer.init(params)}


def loss_mask(batch: Batch) -> jax.Array:
    """The positions that carry loss: every token of a segment (segment id 0 is padding), or
    those a batch's optional `loss_mask` marks (instruction tuning: response tokens only)."""
    if "loss_mask" in batch:
        return batch["loss_mask"] > 0
    return batch["segment_ids"] > 0


def batch_loss_sums(graphdef: nnx.GraphDef, params: Any, batch: Batch,
                    pipeline: Pipeline | None = None, loss_chunk: int = 0) -> dict[str, jax.Array]:
    """Loss sums of one (micro)batch over the positions `loss_mask` picks.

    `loss_chunk` > 0 computes the head and loss that many positions at a time
    (`chunked_cross_entropy_sums`), never holding the full float32 logits.
    """
    model = nnx.merge(graphdef, params)
    mask = loss_mask(batch)
    if loss_chunk:
        hidden = model.hidden(batch["inputs"], batch["positions"], batch["segment_ids"], pipeline)
        return chunked_cross_entropy_sums(hidden, model.head_matrix(), batch["targets"], mask,
                                          loss_chunk)
    logits = model(batch["inputs"], batch["positions"], batch["segment_ids"], pipeline)
    return cross_entropy_sums(logits, batch["targets"], mask)


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *,
                    grad_accum: int, z_loss: float, pipeline: Pipeline | None = None,
                    loss_chunk: int = 0) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """A train step: gradient accumulation over `grad_accum` microbatches, a NaN/Inf
    guard that skips the update (state unchanged, `finite` = 0), then AdamW. With
    `pipeline`, each accumulation microbatch runs through that pipeline schedule.

    `limits` (optional, {"loss": x, "grad_norm": y}) also skips the update of a step
    whose loss or gradient norm is over its limit (the spike action "skip",
    lm.train.anomaly); the metrics then carry `accepted` = 0."""

    def objective(params, microbatch, tokens):
        """The microbatch's share of the batch's mean loss: its sums over the whole batch's
        token count, so the gradients come out as the mean's without a pass dividing them
        (one gradient-sized buffer less: 2.6 of 11.9 GiB of llama_1b's temporaries)."""
        sums = batch_loss_sums(graphdef, params, microbatch, pipeline, loss_chunk)
        return (sums["nll"] + z_loss * sums["log_z_sq"]) / tokens, sums

    grad_fn = jax.grad(objective, has_aux=True)

    def step(state: TrainState, batch: Batch, limits: dict | None = None) -> tuple[TrainState, dict]:
        params = state["params"]
        # the batch's loss-carrying tokens (the sums' "tokens"), known before the forward pass
        tokens = jnp.maximum(jnp.sum(loss_mask(batch)).astype(jnp.float32), 1.0)
        micro = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)

        def accumulate(carry, microbatch):
            grads, sums = grad_fn(params, microbatch, tokens)
            return jax.tree.map(jnp.add, carry, (grads, sums)), None

        if grad_accum == 1:  # no accumulator buffers to zero and add
            grads, sums = grad_fn(params, jax.tree.map(lambda x: x[0], micro), tokens)
        else:
            zero = (jax.tree.map(jnp.zeros_like, params),
                    {"nll": jnp.zeros(()), "log_z_sq": jnp.zeros(()), "tokens": jnp.zeros(())})
            (grads, sums), _ = jax.lax.scan(accumulate, zero, micro)
        loss = sums["nll"] / tokens
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        accepted = finite
        if limits is not None:
            accepted = finite & (loss <= limits["loss"]) & (grad_norm <= limits["grad_norm"])

        updates, new_opt_state = optimizer.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jnp.where(accepted, new, old)
        new_state = {
            "step": state["step"] + 1,
            "params": jax.tree.map(keep, new_params, params),
            "opt_state": jax.tree.map(keep, new_opt_state, state["opt_state"]),
        }
        metrics = {"loss": loss, "z_loss": z_loss * sums["log_z_sq"] / tokens,
                   "grad_norm": grad_norm, "tokens": sums["tokens"],
                   "finite": finite.astype(jnp.int32)}
        if limits is not None:
            metrics["accepted"] = accepted.astype(jnp.int32)
        return new_state, metrics

    return step


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation,
                   t: ml_collections.ConfigDict, pipeline: Pipeline | None = None,
                   **jit_kwargs: Any) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """`make_train_step` as the train config `t` asks (accumulation, z-loss, loss chunking),
    jitted with the state donated when `t.donate_state`; `jit_kwargs` (shardings) go to
    `jax.jit`. The trainer, the memory report and the benchmarks all build the step here."""
    step = make_train_step(graphdef, optimizer, grad_accum=t.grad_accum, z_loss=t.z_loss,
                           pipeline=pipeline, loss_chunk=t.loss_chunk)
    return jax.jit(step, donate_argnums=(0,) if t.donate_state else (), **jit_kwargs)


def make_eval_step(graphdef: nnx.GraphDef, pipeline: Pipeline | None = None,
                   loss_chunk: int = 0) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """Loss sums of a held-out batch; add them over batches, then divide by tokens."""

    def step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        return batch_loss_sums(graphdef, params, batch, pipeline, loss_chunk)

    return step
