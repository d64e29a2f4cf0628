"""The optimizer: AdamW with a weight-decay mask, learning-rate schedules, clipping."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lm.model import mup


def lr_schedule(t: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to `t.lr`, then cosine or warmup-stable-decay (WSD) to `lr * min_lr_ratio`.

    WSD holds the peak rate and decays linearly over the last `decay_fraction` of steps.
    A warmup longer than the run is clamped to the run (`warmup_steps`).
    """
    floor = t.lr * t.min_lr_ratio
    warmup_steps = warmup_steps_of(t)
    warmup = optax.linear_schedule(0.0, t.lr, max(warmup_steps, 1))
    rest = t.steps - warmup_steps
    if t.schedule == "cosine":
        after = optax.cosine_decay_schedule(t.lr, max(rest, 1), alpha=t.min_lr_ratio)
    elif t.schedule == "wsd":
        decay_steps = max(int(round(t.steps * t.decay_fraction)), 1)
        stable = max(rest - decay_steps, 0)
        after = optax.join_schedules(
            [optax.constant_schedule(t.lr), optax.linear_schedule(t.lr, floor, decay_steps)],
            [stable])
    else:
        after = optax.constant_schedule(t.lr)
    return optax.join_schedules([warmup, after], [warmup_steps])


def warmup_steps_of(t: ml_collections.ConfigDict) -> int:
    """The warmup the schedule uses: `train.warmup_steps`, at most the whole run. A short
    continued-pretraining run (`--config.train.steps=20` on a config that warms up for 50)
    warms up over all its steps; `lm train` prints a note saying so."""
    return min(t.warmup_steps, t.steps)


def warmup_note(t: ml_collections.ConfigDict) -> str | None:
    """The note printed when the warmup is clamped, else None."""
    if t.warmup_steps <= t.steps:
        return None
    return (f"train.warmup_steps={t.warmup_steps} is more than train.steps={t.steps}: the learning "
            f"rate warms up over all {t.steps} steps and never decays (set "
            f"--config.train.warmup_steps to choose)")


def weight_decay_mask(params: Any, t: ml_collections.ConfigDict) -> Any:
    """True where weight decay applies: matrices, and embeddings/norms only if configured."""

    def decays(path: tuple, _leaf: Any) -> bool:
        names = [str(getattr(p, "key", p)) for p in path]
        if names[0] == "embed":
            return t.decay_embeddings
        if any(name.endswith("norm") for name in names):
            return t.decay_norms
        return True

    return jax.tree_util.tree_map_with_path(decays, params)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale the updates by min(1, max_norm / global norm): optax's clipping, written as one
    scalar factor times each leaf. A multiply by a scalar is cheap enough for XLA to fuse
    into every consumer (AdamW's moment and update fusions); optax's per-leaf
    `where(norm < max, g, g / norm * max)` is not, so the clipped gradients were written
    out as a full copy (3.5 of llama_1b's 9.3 GiB of temporaries at batch 1 x 256,
    `lm train --compile-only`). Equal to optax's up to rounding of the factor."""

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        del params
        norm = optax.global_norm(updates)
        factor = jnp.minimum(1.0, max_norm / norm)  # 1 when norm is 0 (max_norm / 0 = inf)
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_by_multipliers(multipliers: Any) -> optax.GradientTransformation:
    """Multiply each leaf's update by its constant from `multipliers` (a pytree of floats
    shaped like the params): per-parameter learning rates after AdamW, whose decoupled
    weight decay then scales with the same factor, as in muP's MuAdamW."""

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        del params
        return jax.tree.map(lambda u, k: u if k == 1.0 else u * jnp.asarray(k, u.dtype),
                            updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(t: ml_collections.ConfigDict, params: Any,
                   m: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the schedule with the decay mask; under muP
    (`m.parametrization`), then the per-parameter learning-rate multipliers."""
    adamw = optax.adamw(lr_schedule(t), b1=t.b1, b2=t.b2, eps=t.eps,
                        weight_decay=t.weight_decay, mask=weight_decay_mask(params, t))
    parts = [clip_by_global_norm(t.clip_norm)] if t.clip_norm > 0 else []
    parts.append(adamw)
    if mup.is_mup(m):
        parts.append(scale_by_multipliers(mup.lr_multipliers(params, m)))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)
