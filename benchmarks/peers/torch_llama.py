"""A minimal PyTorch twin of lm's decoder in the nanoGPT style, and its train step.

For an lm model config it builds the same shape and math as `lm.model.decoder.Decoder`:
pre-norm RMSNorm blocks, rotate-half RoPE, grouped-query causal attention through
`F.scaled_dot_product_attention(is_causal=True)` (nanoGPT's way), SwiGLU MLP, final
norm, tied or untied head, all float32. Q, K and V come from one fused projection, as
nanoGPT's `c_attn`. Every row is one whole sequence (positions 0..L-1, no packing), the
layout of benchmarks/train_step.py's synthetic batches.

The train step is mean cross-entropy, global-norm clipping and `torch.optim.AdamW`
(fused CPU kernel) with lm's weight-decay mask, on lm's learning-rate schedule (its
values precomputed from `lm.train.optim.lr_schedule`, stepped by a `LambdaLR`).
`build` sets torch's intra-op threads to os.cpu_count(), the cores XLA's CPU client uses.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lm.config import head_dim
from lm.scaling.counts import param_counts
from lm.train.optim import lr_schedule
from peers import check_supported as check_peer_config


def check_supported(cfg: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first config field this peer does not model."""
    check_peer_config(cfg, "PyTorch")


def rope_tables(m: ml_collections.ConfigDict, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [length, head_dim/2] of positions 0..length-1, as lm's `apply_rope`."""
    half = head_dim(m) // 2
    inv_freq = m.rope_theta ** (-torch.arange(half, dtype=torch.float32) / half)
    angle_LxK2 = torch.arange(length, dtype=torch.float32)[:, None] * inv_freq
    return torch.cos(angle_LxK2), torch.sin(angle_LxK2)


def apply_rope(x_BxLxHxK: torch.Tensor, cos_LxK2: torch.Tensor,
               sin_LxK2: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: the first half of each head pairs with the second half."""
    x1, x2 = x_BxLxHxK.chunk(2, dim=-1)
    cos, sin = cos_LxK2[:, None], sin_LxK2[:, None]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, m: ml_collections.ConfigDict):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = m.num_heads, m.num_kv_heads, head_dim(m)
        d, hk, kvk = m.d_model, m.num_heads * self.head_dim, m.num_kv_heads * self.head_dim
        self.attn_norm = nn.RMSNorm(d, eps=m.norm_eps)
        self.qkv = nn.Linear(d, hk + 2 * kvk, bias=False)
        self.out = nn.Linear(hk, d, bias=False)
        self.mlp_norm = nn.RMSNorm(d, eps=m.norm_eps)
        self.gate = nn.Linear(d, m.d_ff, bias=False)
        self.up = nn.Linear(d, m.d_ff, bias=False)
        self.down = nn.Linear(m.d_ff, d, bias=False)

    def forward(self, x_BxLxD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, length, _ = x_BxLxD.shape
        h, kv, k = self.heads, self.kv_heads, self.head_dim
        q, key, value = self.qkv(self.attn_norm(x_BxLxD)).split([h * k, kv * k, kv * k], dim=-1)
        q_BxHxLxK = apply_rope(q.view(b, length, h, k), cos, sin).transpose(1, 2)
        k_BxKVxLxK = apply_rope(key.view(b, length, kv, k), cos, sin).transpose(1, 2)
        v_BxKVxLxK = value.view(b, length, kv, k).transpose(1, 2)
        y = F.scaled_dot_product_attention(q_BxHxLxK, k_BxKVxLxK, v_BxKVxLxK, is_causal=True,
                                           enable_gqa=h != kv)
        x_BxLxD = x_BxLxD + self.out(y.transpose(1, 2).reshape(b, length, h * k))
        n = self.mlp_norm(x_BxLxD)
        return x_BxLxD + self.down(F.silu(self.gate(n)) * self.up(n))


class LlamaTorch(nn.Module):
    """lm's decoder for config `m` in PyTorch: tokens [B, L] -> float32 logits [B, L, vocab]."""

    def __init__(self, m: ml_collections.ConfigDict):
        super().__init__()
        self.embed = nn.Embedding(m.vocab_size, m.d_model)
        self.blocks = nn.ModuleList(Block(m) for _ in range(m.num_layers))
        self.final_norm = nn.RMSNorm(m.d_model, eps=m.norm_eps)
        self.head = nn.Linear(m.d_model, m.vocab_size, bias=False)
        if m.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(m, m.max_seq_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        out_std = m.init_std / math.sqrt(2 * m.num_layers)  # lm's scaled output init
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = out_std if name.endswith(("out.weight", "down.weight")) else m.init_std
                nn.init.normal_(p, std=std)

    def forward(self, tokens_BxL: torch.Tensor) -> torch.Tensor:
        length = tokens_BxL.shape[1]
        cos, sin = self.cos[:length], self.sin[:length]
        x_BxLxD = self.embed(tokens_BxL)
        for block in self.blocks:
            x_BxLxD = block(x_BxLxD, cos, sin)
        return self.head(self.final_norm(x_BxLxD))


def num_params(model: nn.Module) -> int:
    """Distinct parameters (a tied head is counted once)."""
    return sum(p.numel() for p in model.parameters())


def _assign(param: torch.Tensor, value: np.ndarray, name: str) -> None:
    if tuple(param.shape) != value.shape:
        raise ValueError(f"lm parameter {name} has shape {value.shape} but the PyTorch peer "
                         f"expects {tuple(param.shape)}; build both from the same model config")
    param.copy_(torch.tensor(value, dtype=torch.float32))


@torch.no_grad()
def load_lm_block(block: Block, blocks: dict[str, dict[str, np.ndarray]], i: int) -> None:
    """Copy layer `i` of lm's stacked block parameters (numpy, `params["blocks"]`) into `block`."""
    attn, mlp = blocks["attn"], blocks["mlp"]
    d = attn["wq"].shape[1]
    qkv_Dx3 = np.concatenate([attn[w][i].reshape(d, -1) for w in ("wq", "wk", "wv")], axis=1)
    _assign(block.qkv.weight, qkv_Dx3.T, f"blocks.attn.wq/wk/wv[{i}]")
    _assign(block.out.weight, attn["wo"][i].reshape(-1, d).T, f"blocks.attn.wo[{i}]")
    _assign(block.gate.weight, mlp["w_gate"][i].T, f"blocks.mlp.w_gate[{i}]")
    _assign(block.up.weight, mlp["w_up"][i].T, f"blocks.mlp.w_up[{i}]")
    _assign(block.down.weight, mlp["w_down"][i].T, f"blocks.mlp.w_down[{i}]")
    _assign(block.attn_norm.weight, blocks["attn_norm"]["scale"][i], f"blocks.attn_norm[{i}]")
    _assign(block.mlp_norm.weight, blocks["mlp_norm"]["scale"][i], f"blocks.mlp_norm[{i}]")


@torch.no_grad()
def load_lm_params(model: LlamaTorch, params: Any) -> None:
    """Copy lm's parameter dict (`build_model`'s layout, layers stacked) into `model`."""
    blocks = {group: {k: np.asarray(v) for k, v in leaves.items()}
              for group, leaves in params["blocks"].items()}
    _assign(model.embed.weight, np.asarray(params["embed"]), "embed")
    for i, block in enumerate(model.blocks):
        load_lm_block(block, blocks, i)
    _assign(model.final_norm.weight, np.asarray(params["final_norm"]["scale"]), "final_norm")
    if "head" in params:
        _assign(model.head.weight, np.asarray(params["head"]).T, "head")


def make_optimizer(model: LlamaTorch, t: ml_collections.ConfigDict,
                   ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with lm's decay mask (matrices decay; the embedding, and a head tied to it, only
    with `t.decay_embeddings`; norm scales only with `t.decay_norms`) and lm's lr schedule."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # a tied head appears once, as embed.weight
        if name == "embed.weight":
            wanted = t.decay_embeddings
        elif p.dim() == 1:
            wanted = t.decay_norms
        else:
            wanted = True
        (decay if wanted else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.b1, t.b2), eps=t.eps, fused=True)
    lrs = np.asarray(jax.vmap(lr_schedule(t))(jnp.arange(t.steps + 1)), np.float64)
    scale = lambda step: lrs[min(step, t.steps)] / t.lr  # LambdaLR multiplies lr by this
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, scale)


def train_step(model: LlamaTorch, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, inputs_BxL: torch.Tensor,
               targets_BxL: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """One AdamW step on the mean next-token cross-entropy; returns that (pre-update) loss."""
    logits = model(inputs_BxL)
    loss = F.cross_entropy(logits.flatten(0, 1), targets_BxL.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm, foreach=True)
    optimizer.step()
    scheduler.step()
    return loss.detach()


def build(cfg: ml_collections.ConfigDict, lm_params: Any,
          ) -> tuple[LlamaTorch, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The model with lm's weights `lm_params`, its optimizer and lr scheduler, on all cores."""
    check_supported(cfg)
    torch.set_num_threads(os.cpu_count() or 1)
    model = LlamaTorch(cfg.model)
    expected = param_counts(cfg.model).total
    if num_params(model) != expected:
        raise AssertionError(f"PyTorch peer has {num_params(model)} parameters, lm's "
                             f"param_counts says {expected}")
    load_lm_params(model, lm_params)
    return model, *make_optimizer(model, cfg.train)
