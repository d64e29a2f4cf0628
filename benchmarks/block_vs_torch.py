"""Where the train-step gap to PyTorch lies: one transformer block, and its matmuls alone.

    python benchmarks/block_vs_torch.py [--preset small] [--rounds 5] [--config.section.field=value ...]

For the preset's block shape (batch x seq_len tokens, d_model, d_ff, heads) four things are
timed alternately in one process, `--rounds` times each, so machine load hits all alike:

- lm block: the forward and backward (gradients of parameters and input) of one lm `Block`
  exactly as the decoder runs it (its attention kernel, projections, RMSNorm, RoPE, SwiGLU),
  under jax.jit;
- lm matmuls: only that block's seven dense projections, each with its forward product and
  both backward products (dy W^T and x^T dy), on inputs of the same shapes, under jax.jit;
- torch block / torch matmuls: the same two things in PyTorch (peers/torch_llama.py's Block,
  eager, SDPA attention; torch.matmul), on the lm block's weights.

The block's output is checked against PyTorch's first (same weights, same input). The table
gives the best time of each, the matmuls' GFLOP/s, and "rest" = block - matmuls: attention,
norms, RoPE, activations and the framework's own overhead. A ratio lm/torch near 1 in the
matmul column and far from 1 in the rest column says the gap is outside the matmul kernels.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lm.config import ConfigError, head_dim, load_config
from lm.model.decoder import Block
from train_step import aligned, preset_path, split_overrides

try:
    import torch

    from peers import torch_llama
except ImportError as e:
    torch, torch_llama, TORCH_MISSING = None, None, str(e)
else:
    TORCH_MISSING = ""


def dense_shapes(m) -> list[tuple[int, int]]:
    """[in, out] of the block's projections: q, k, v, o, gate, up, down."""
    hk, kvk = m.num_heads * head_dim(m), m.num_kv_heads * head_dim(m)
    d, f = m.d_model, m.d_ff
    return [(d, hk), (d, kvk), (d, kvk), (hk, d), (d, f), (d, f), (f, d)]


def matmul_operands(m, tokens: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Random float32 inputs [tokens, in], output gradients [tokens, out] and weights [in, out]
    for each projection of `dense_shapes(m)`; the same numbers for both frameworks."""
    rng = np.random.default_rng(1)
    shapes = dense_shapes(m)
    ins = [rng.standard_normal((tokens, k), np.float32) for k, _ in shapes]
    grads = [rng.standard_normal((tokens, n), np.float32) for _, n in shapes]
    ws = [rng.standard_normal((k, n), np.float32) / np.float32(np.sqrt(k)) for k, n in shapes]
    return ins, grads, ws


def matmul_flops(tokens: int, shapes: Sequence[tuple[int, int]]) -> float:
    return 3 * sum(2.0 * tokens * k * n for k, n in shapes)  # forward, dx and dW


def timed(fn: Callable[[], None], times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def build_lm(cfg, x_BxLxD: np.ndarray, weights_BxLxD: np.ndarray):
    """The lm block's jitted forward+backward and the jitted matmul set; returns callables."""
    m = cfg.model
    block = Block(m, rngs=nnx.Rngs(cfg.train.seed))
    graphdef, state = nnx.split(block)
    b, length, _ = x_BxLxD.shape
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
    segments = jnp.ones((b, length), jnp.int32)

    def out(state, x):
        return nnx.merge(graphdef, state)(x, positions, segments)[0]

    weights = jnp.asarray(weights_BxLxD)
    grad = jax.jit(jax.grad(lambda s, x: jnp.sum(out(s, x) * weights), argnums=(0, 1)))
    x = jnp.asarray(x_BxLxD)

    ins, grads, ws = jax.tree.map(jnp.asarray, matmul_operands(m, b * length))
    matmuls = jax.jit(lambda ins, grads, ws: [(a @ w, g @ w.T, a.T @ g)
                                               for a, g, w in zip(ins, grads, ws)])
    params = nnx.to_pure_dict(nnx.state(block, nnx.Param))
    return (lambda: jax.block_until_ready(grad(state, x)),
            lambda: jax.block_until_ready(matmuls(ins, grads, ws)),
            np.asarray(jax.jit(out)(state, x)), params)


def build_torch(cfg, params, x_BxLxD: np.ndarray, weights_BxLxD: np.ndarray):
    m = cfg.model
    block = torch_llama.Block(m)
    stacked = jax.tree.map(lambda v: np.asarray(v)[None], params)
    torch_llama.load_lm_block(block, stacked, 0)
    b, length, _ = x_BxLxD.shape
    cos, sin = torch_llama.rope_tables(m, length)
    x = torch.tensor(x_BxLxD, requires_grad=True)
    weights = torch.tensor(weights_BxLxD)

    def grad():
        block.zero_grad(set_to_none=True)
        x.grad = None
        (block(x, cos, sin) * weights).sum().backward()

    ins, grads, ws = jax.tree.map(torch.tensor, matmul_operands(m, b * length))

    def matmuls():
        with torch.no_grad():
            for a, g, w in zip(ins, grads, ws):
                a @ w, g @ w.T, a.T @ g

    with torch.no_grad():
        reference = block(x, cos, sin).numpy()
    return grad, matmuls, reference


def main(argv: Sequence[str] | None = None) -> int:
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(rest)
    if torch is None:
        print(f"error: this benchmark needs PyTorch ({TORCH_MISSING})", file=sys.stderr)
        return 2
    try:
        cfg = load_config(preset_path(args.preset), overrides)
    except ConfigError as e:
        print(f"error: preset {args.preset}: {e}", file=sys.stderr)
        return 2
    m = cfg.model
    b, length = cfg.train.batch_size, cfg.data.seq_len
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, length, m.d_model), np.float32)
    w = rng.standard_normal((b, length, m.d_model), np.float32)
    lm_block, lm_mm, lm_out, params = build_lm(cfg, x, w)
    t_block, t_mm, t_out = build_torch(cfg, params, x, w)
    diff = float(np.max(np.abs(lm_out - t_out)))
    if diff > 1e-3 * max(1.0, float(np.max(np.abs(t_out)))):
        print(f"error: lm's and PyTorch's block outputs differ by {diff:.3g}", file=sys.stderr)
        return 1
    fns = {"lm block": lm_block, "lm matmuls": lm_mm, "torch block": t_block, "torch matmuls": t_mm}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # compile / warm up
    for _ in range(args.rounds):
        for name, fn in fns.items():
            timed(fn, times[name])
    best = {k: min(v) for k, v in times.items()}
    flops = matmul_flops(b * length, dense_shapes(m))
    print(f"{args.preset}: one block, {b} x {length} tokens, d_model {m.d_model}, d_ff {m.d_ff}, "
          f"attention={m.attention}; best of {args.rounds} alternating rounds; "
          f"outputs agree to {diff:.2g}")
    rows = [["impl", "block fwd+bwd ms", "matmuls alone ms", "matmul GFLOP/s", "rest ms"]]
    for impl in ("lm", "torch"):
        blk, mm = best[f"{impl} block"], best[f"{impl} matmuls"]
        rows.append([impl, f"{1e3 * blk:.1f}", f"{1e3 * mm:.1f}", f"{flops / mm / 1e9:.0f}",
                     f"{1e3 * (blk - mm):.1f}"])
    ratio = lambda a, c: best[f"lm {a}"] / best[f"torch {c}"]
    rest = (best["lm block"] - best["lm matmuls"]) / (best["torch block"] - best["torch matmuls"])
    rows.append(["lm / torch", f"{ratio('block', 'block'):.2f}x", f"{ratio('matmuls', 'matmuls'):.2f}x",
                 "", f"{rest:.2f}x"])
    print("\n".join(aligned(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
