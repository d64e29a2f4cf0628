"""The muP coordinate check (Yang et al. 2022, "Tensor Programs V", figure 5 and appendix D).

    lm mup coord-check --config FILE --widths 64,128,256,512 [--steps K] --out DIR

For each width and each parametrization (SP and muP, the proxy being the narrowest width),
a copy of the config's model is built at that d_model (d_ff keeps its ratio to d_model, the
head count is kept, so head_dim grows) and trained for K steps with Adam at the config's
learning rate, held constant with no warmup, on the same K batches of the config's corpus.
Before each step, the root-mean-square of every activation is recorded: the token
embedding, each layer's attention and MLP branch outputs and residual stream, and the
logits. Under muP these stay flat in width at every step; under SP the later steps'
activations grow with width (the updates are too large for wide models), which is what
makes SP's best learning rate shrink as models widen.

The result: `coord_check.json` (every RMS, and the slope of log RMS against log width at the
last step per activation and parametrization) and `coord_check.png`. The corpus is built
into DIR/data, or read from `data.prepared_dir` when the config sets one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from lm.config import validate
from lm.data.build import build_run_data
from lm.errors import ConfigError
from lm.files import write_json_atomic
from lm.train.optim import make_optimizer
from lm.train.state import build_model
from lm.train.step import init_train_state, make_train_step

PARAMETRIZATIONS = ("sp", "mup")


def width_config(cfg: ml_collections.ConfigDict, width: int, parametrization: str,
                 base_width: int, steps: int) -> ml_collections.ConfigDict:
    """`cfg` at d_model = `width` under `parametrization` (muP relative to `base_width`),
    with a constant learning rate and no warmup for `steps` steps; ConfigError names --widths."""
    c = ml_collections.ConfigDict(cfg.to_dict())
    m, t = c.model, c.train
    m.d_ff = max(1, round(m.d_ff * width / m.d_model))
    m.update(d_model=width, head_dim=0, parametrization=parametrization,
             mup_base_width=base_width, mup_base_head_dim=0)
    t.update(steps=steps, warmup_steps=0, schedule="constant", grad_accum=1)
    try:
        return validate(c)
    except ConfigError as err:
        raise ConfigError(f"--widths: width {width} does not make a valid model: {err}") from None


def activation_rms(model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """RMS of the token embedding, every layer's attention/MLP branch and residual stream, and
    the logits, for one batch (the layers run one by one, outside the scan)."""
    rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32))))
    x = jnp.take(model.embed[...].astype(model.compute_dtype), batch["inputs"], axis=0)
    out = {"embedding": rms(x)}
    block_def, block_state = nnx.split(model.blocks)
    for i in range(jax.tree.leaves(block_state)[0].shape[0]):
        block = nnx.merge(block_def, jax.tree.map(lambda a: a[i], block_state))
        x, _, branches = block.with_branches(x, batch["positions"], batch["segment_ids"])
        out |= {f"layer{i}.attn": rms(branches["attn"]), f"layer{i}.mlp": rms(branches["mlp"]),
                f"layer{i}.residual": rms(x)}
    out["logits"] = rms(model.logits(model.final_norm(x)))
    return out


def fixed_batches(cfg: ml_collections.ConfigDict, steps: int, data_dir: Path) -> list[dict]:
    """The first `steps` training batches of the config's corpus (built into `data_dir`)."""
    data = build_run_data(cfg.data, cfg.model.vocab_size, data_dir)
    iterator = data.train_batches(cfg.train.batch_size, steps)
    return [{k: jnp.asarray(v) for k, v in next(iterator).items()} for _ in range(steps)]


def measure(cfg: ml_collections.ConfigDict, batches: list[dict], seed: int) -> list[dict[str, float]]:
    """Per step, the activations' RMS before that step's update, for the model of `cfg`."""
    graphdef, params = build_model(cfg.model, seed)
    optimizer = make_optimizer(cfg.train, params, cfg.model)
    state = init_train_state(params, optimizer)
    step = jax.jit(make_train_step(graphdef, optimizer, grad_accum=1, z_loss=0.0))
    stats = jax.jit(lambda p, b: activation_rms(nnx.merge(graphdef, p), b))
    rows = []
    for batch in batches:
        rows.append({k: float(v) for k, v in stats(state["params"], batch).items()})
        state, metrics = step(state, batch)
        rows[-1]["loss"] = float(metrics["loss"])
    return rows


def log_slope(widths: Sequence[int], values: Sequence[float]) -> float:
    """The least-squares slope of log(value) against log(width)."""
    return float(np.polyfit(np.log(widths), np.log(np.maximum(values, 1e-30)), 1)[0])


def coord_check(cfg: ml_collections.ConfigDict, widths: Sequence[int], steps: int, out: Path,
                seeds: int = 1, progress: bool = True) -> dict[str, Any]:
    """Run the check; write `out`/coord_check.json and coord_check.png; return the JSON."""
    widths = sorted(set(int(w) for w in widths))
    if len(widths) < 2 or widths[0] <= 0:
        raise ConfigError(f"--widths needs two or more positive widths, got {widths}")
    if steps < 1 or seeds < 1:
        raise ConfigError(f"--steps and --seeds must be >= 1, got {steps} and {seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configs = {(p, w): width_config(cfg, w, p, widths[0], steps) for p in PARAMETRIZATIONS for w in widths}
    d = cfg.data
    batches = fixed_batches(configs["sp", widths[0]], steps, Path(d.prepared_dir) if d.prepared_dir else out / "data")
    results: dict[str, dict[str, list[dict[str, float]]]] = {p: {} for p in PARAMETRIZATIONS}
    for (p, w), c in configs.items():
        per_seed = [measure(c, batches, seed) for seed in range(seeds)]
        results[p][str(w)] = [{k: float(np.mean([s[i][k] for s in per_seed])) for k in per_seed[0][i]}
                              for i in range(steps)]
        if progress:
            print(f"[coord-check] {p} width {w}: logits RMS {results[p][str(w)][-1]['logits']:.3g} "
                  f"at step {steps - 1}, loss {results[p][str(w)][-1]['loss']:.3f}", flush=True)
    names = [k for k in results["sp"][str(widths[0])][0] if k != "loss"]
    slopes = {p: {k: log_slope(widths, [results[p][str(w)][-1][k] for w in widths]) for k in names}
              for p in PARAMETRIZATIONS}
    report = {"widths": widths, "steps": steps, "seeds": seeds, "base_width": widths[0],
              "lr": cfg.train.lr, "activations": names, "rms": results, "final_step_slopes": slopes}
    write_json_atomic(report, out / "coord_check.json")
    from lm.train.coord_check_plot import plot_coord_check
    plot_coord_check(report, out / "coord_check.png")
    return report
