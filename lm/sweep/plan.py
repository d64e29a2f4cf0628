"""Plan sweep runs: a model shape for a target parameter count, steps for a token count,
tokens for a FLOP budget, and the `RunSpec` of each run with its counts and compute.

The shape family (`ShapeFamily`) is the rule every planned model follows:

- multi-head attention with a fixed `head_dim`: d_model = num_heads * head_dim and
  num_kv_heads = num_heads (as in the Kaplan and Chinchilla model families);
- an aspect ratio d_model / num_layers inside [min_aspect, max_aspect] (Kaplan et al.
  2020 find that at fixed N the loss changes by only a few percent over a wide range of
  aspect ratios; the default band is 32-64);
- a SwiGLU width d_ff = 8/3 d_model rounded to the nearest multiple of `ffn_multiple`;
- with `num_layers` > 0, that depth for every shape and no aspect band: a width sweep (muP's
  learning-rate transfer, experiments/sweeps/mup_transfer_cpu.py).

Among the family's shapes the planner takes the one whose parameter count (total or
non-embedding, the caller says which; counted by `lm.scaling.counts.param_counts`)
is nearest the target in log space, ties going to the aspect ratio nearest the
band's geometric middle. If that count is off by more than the tolerance, it raises
ConfigError naming the target and the nearest counts the family can reach.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any, Sequence

import ml_collections

from lm.config import ConfigError, default_config, merge, validate
from lm.scaling.counts import param_counts, train_flops_per_token

N_KINDS = ("non_embedding", "total")  # which parameter count a target N means
FLOPS_KINDS = ("6n", "exact")  # how a FLOP budget is turned into tokens


@dataclasses.dataclass(frozen=True)
class ShapeFamily:
    """The rule planned shapes follow (see the module docstring)."""

    head_dim: int = 64
    min_aspect: float = 32.0
    max_aspect: float = 64.0
    ffn_multiple: int = 64
    num_layers: int = 0  # > 0: every shape has this depth, whatever its aspect (width sweeps)


@dataclasses.dataclass(frozen=True)
class Shape:
    num_layers: int
    d_model: int
    num_heads: int
    num_kv_heads: int
    d_ff: int

    def model_overrides(self) -> dict[str, int]:
        """The `model` section fields this shape sets (head_dim 0: d_model // num_heads)."""
        return {**dataclasses.asdict(self), "head_dim": 0}


def _pick(counts: Any, n_kind: str) -> int:
    """The `n_kind` count of `param_counts`' result."""
    return counts.non_embedding if n_kind == "non_embedding" else counts.total


def _n(m: ml_collections.ConfigDict | SimpleNamespace, n_kind: str) -> int:
    return _pick(param_counts(m), n_kind)


def _with_shape(base_fields: dict[str, Any], shape: Shape) -> SimpleNamespace:
    """A model config with `shape`: a plain namespace, since the counts only read fields and
    a ConfigDict per candidate shape would dominate the planner's time."""
    return SimpleNamespace(**{**base_fields, **shape.model_overrides()})


def family_shapes(family: ShapeFamily, max_d_model: int) -> list[Shape]:
    """Every shape of the family with d_model <= max_d_model."""
    shapes = []
    for d in range(family.head_dim, max_d_model + 1, family.head_dim):
        d_ff = max(family.ffn_multiple, round(8 / 3 * d / family.ffn_multiple) * family.ffn_multiple)
        depths = ([family.num_layers] if family.num_layers else
                  range(max(1, math.ceil(d / family.max_aspect)), int(d // family.min_aspect) + 1))
        for layers in depths:
            heads = d // family.head_dim
            shapes.append(Shape(layers, d, heads, heads, d_ff))
    return shapes


def shape_for_params(target: float, base_model: ml_collections.ConfigDict, family: ShapeFamily, *,
                     n_kind: str, tolerance: float) -> Shape:
    """The family's shape whose `n_kind` parameter count is nearest `target`.

    `base_model` supplies the fields a shape does not set (vocab_size and
    tie_embeddings matter for the total count). Raises ConfigError when the
    nearest count is more than `tolerance` (relative) away from the target.
    """
    if n_kind not in N_KINDS:
        raise ConfigError(f"n_kind {n_kind!r} is not one of {', '.join(N_KINDS)}")
    # 12 L d^2 (the non-embedding count) with L >= d / max_aspect bounds d_model from above.
    max_d = int((target * family.max_aspect / 12) ** (1 / 3) * 1.5) + family.head_dim
    if family.num_layers:  # 12 L d^2 with L fixed
        max_d = int(math.sqrt(target / (12 * family.num_layers)) * 1.5) + family.head_dim
    middle = math.sqrt(family.min_aspect * family.max_aspect)
    base_fields = base_model.to_dict()
    scored = []
    for shape in family_shapes(family, max_d):
        n = _n(_with_shape(base_fields, shape), n_kind)
        aspect = shape.d_model / shape.num_layers
        scored.append((abs(math.log(n / target)), abs(math.log(aspect / middle)), n, shape))
    if not scored:
        raise ConfigError(f"family {family} has no shape with d_model <= {max_d}; lower "
                          "family.head_dim or min_aspect")
    _, _, n, shape = min(scored, key=lambda s: s[:2])
    if abs(n / target - 1) > tolerance:
        below = max((s[2] for s in scored if s[2] <= target), default=None)
        above = min((s[2] for s in scored if s[2] >= target), default=None)
        reachable = " and ".join(f"{x:,}" for x in (below, above) if x is not None)
        raise ConfigError(
            f"target N={target:,.0f} ({n_kind}): the nearest shapes of {family} have {reachable} "
            f"parameters, more than {tolerance:.0%} away; choose a target near one of those or "
            "widen the family's aspect band")
    return shape


def steps_for_tokens(tokens: float, batch_size: int, seq_len: int) -> int:
    """Optimizer steps to see at least `tokens`: ceil(D / (batch_size * seq_len))."""
    return max(1, math.ceil(tokens / (batch_size * seq_len)))


def tokens_for_budget(budget: float, m: ml_collections.ConfigDict, seq_len: int, *,
                      flops: str, n_kind: str) -> float:
    """Tokens D that spend `budget` FLOPs on model `m`: C / (6 N) with the `n_kind` count,
    or C / (exact training FLOPs per token, Chinchilla appendix F) for flops="exact"."""
    if flops == "6n":
        return budget / (6 * _n(m, n_kind))
    if flops == "exact":
        return budget / train_flops_per_token(m, seq_len)
    raise ConfigError(f"flops {flops!r} is not one of {', '.join(FLOPS_KINDS)}")


@dataclasses.dataclass(frozen=True)
class PlannedPoint:
    """A sweep point as planned, before rules and tune: what their callables receive.
    `n` is the parameter count in the sweep's n_kind, `tokens` the D planned for the point
    (before rounding to whole steps), `budget` its IsoFLOP budget (None outside IsoFLOP
    sweeps), `batch_size` and `seq_len` the base config's, `flops_per_token` the exact
    training FLOPs per token (`lm.scaling.counts.train_flops_per_token`)."""

    name: str
    n: int
    n_total: int
    n_non_embedding: int
    tokens: float
    budget: float | None
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    vocab_size: int
    seq_len: int
    batch_size: int
    flops_per_token: float


def planned_point(name: str, cfg: ml_collections.ConfigDict, *, n_kind: str, tokens: float,
                  budget: float | None) -> PlannedPoint:
    """The PlannedPoint of the point `name` whose shaped (base) config is `cfg`."""
    m, seq_len = cfg.model, cfg.data.seq_len
    counts = param_counts(m)
    return PlannedPoint(name=name, n=_pick(counts, n_kind), n_total=counts.total,
                        n_non_embedding=counts.non_embedding, tokens=tokens, budget=budget,
                        d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads,
                        d_ff=m.d_ff, vocab_size=m.vocab_size, seq_len=seq_len,
                        batch_size=cfg.train.batch_size,
                        flops_per_token=train_flops_per_token(m, seq_len))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One planned run. `overrides` are nested config overrides onto `default_config()` that
    give the run's full config; `flops_6n` is 6 * N * tokens with the sweep's N convention,
    `flops_exact` the Chinchilla appendix-F count times tokens; `budget` is the IsoFLOP
    budget the run belongs to (None outside IsoFLOP sweeps). `point` names the sweep point
    the run belongs to (the run's own name unless the sweep tunes: then the point's members
    share it); `hparams` holds the values the sweep's rules and tune set, by field name
    ("train.lr"). Both have defaults, so sweep.json files from before tuning still load."""

    name: str
    overrides: dict[str, Any]
    n_total: int
    n_non_embedding: int
    tokens: int
    flops_6n: float
    flops_exact: float
    budget: float | None = None
    point: str = ""
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.point:
            object.__setattr__(self, "point", self.name)

    def config(self) -> ml_collections.ConfigDict:
        """The run's validated config."""
        return validate(merge(default_config(), self.overrides))


def config_overrides(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The fields of `cfg` that differ from `default_config()`, nested by section."""
    defaults, current = default_config().to_dict(), cfg.to_dict()
    diff: dict[str, Any] = {}
    for section, fields in current.items():
        changed = {k: v for k, v in fields.items() if v != defaults[section][k]}
        if changed:
            diff[section] = changed
    return diff


def field_value(cfg: ml_collections.ConfigDict, field: str) -> Any:
    """The value of the dotted config field `field` ("train.lr") in `cfg`."""
    for key in field.split("."):
        cfg = cfg[key]
    return cfg


def run_spec(name: str, cfg: ml_collections.ConfigDict, *, n_kind: str, budget: float | None = None,
             point: str = "", hparams: dict[str, Any] | None = None) -> RunSpec:
    """The RunSpec of a resolved run config (tokens = steps * batch_size * seq_len)."""
    m, seq_len = cfg.model, cfg.data.seq_len
    counts = param_counts(m)
    tokens = cfg.train.steps * cfg.train.batch_size * seq_len
    return RunSpec(name=name, overrides=config_overrides(cfg), n_total=counts.total,
                   n_non_embedding=counts.non_embedding, tokens=tokens,
                   flops_6n=6.0 * _pick(counts, n_kind) * tokens,
                   flops_exact=train_flops_per_token(m, seq_len) * tokens, budget=budget,
                   point=point, hparams=dict(hparams or {}))


def compact(x: float) -> str:
    """A short, file-name-safe number to 3 significant digits: 1e9 -> '1e9', 2.5e13 -> '2.5e13',
    300 -> '300', 0.003 -> '0.003', 3e-5 -> '3e-5' (Python's '.3g', its exponent written
    as a plain integer)."""
    text = f"{x:.3g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def hparam_text(value: Any) -> str:
    """A tuned or ruled value as shown in tables and status: numbers with 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def format_table(specs: Sequence[RunSpec], *, n_kind: str) -> str:
    """The plan as an aligned text table, one line per run, and a total-compute line. A tuned
    sweep adds the point of each run; rules and tune add a column per field they set."""
    tuned = any(spec.point != spec.name for spec in specs)
    fields = list(dict.fromkeys(field for spec in specs for field in spec.hparams))
    header = ["run", *(["point"] if tuned else []), *fields, "budget", "layers", "d_model", "heads",
              "kv", "d_ff", "N_total", "N_non_emb", "steps", "tokens", "D/N", "C_6N", "C_exact"]
    rows = [header]
    for spec in specs:
        cfg = spec.config()
        m, steps = cfg.model, cfg.train.steps
        n = spec.n_non_embedding if n_kind == "non_embedding" else spec.n_total
        rows.append([spec.name, *([spec.point] if tuned else []),
                     *(hparam_text(spec.hparams[field]) for field in fields),
                     "" if spec.budget is None else f"{spec.budget:.3g}",
                     str(m.num_layers), str(m.d_model), str(m.num_heads),
                     str(m.num_kv_heads), str(m.d_ff), f"{spec.n_total:,}",
                     f"{spec.n_non_embedding:,}", f"{steps:,}", f"{spec.tokens:,}",
                     f"{spec.tokens / n:.1f}", f"{spec.flops_6n:.3g}", f"{spec.flops_exact:.3g}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    names = 2 if tuned else 1  # run (and point) are left-aligned
    lines = ["  ".join(cell.ljust(w) if i < names else cell.rjust(w) for i, (cell, w)
                       in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    total = sum(spec.flops_exact for spec in specs)
    points = f" at {len({spec.point for spec in specs})} points" if tuned else ""
    lines.append(f"{len(specs)} runs{points}; N = {n_kind} parameters, C_6N = 6 N D with that N; "
                 f"total exact compute {total:.3g} FLOPs")
    return "\n".join(lines)
