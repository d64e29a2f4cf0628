"""Sweep configs and their expansion into runs.

A sweep file (`experiments/sweeps/*.py`) defines `get_sweep()` returning a dict
or ConfigDict with these keys:

    base         an experiment config path (relative paths are relative to the sweep
                 file) or a dict of config overrides: everything but the planned fields
    kind         "n":         model_sizes x one token count (Kaplan L(N))
                 "d":         one model size x several token counts (Kaplan L(D))
                 "isoflop":   per FLOP budget C, several model sizes; D = C / FLOPs per token
                 "approach1": model_sizes x tokens, each a full cosine schedule
                              (Chinchilla approach 1)
                 "epochs":    model_sizes x epochs on `unique_tokens` unique tokens
                              (data-constrained scaling, Muennighoff et al. 2023)
    n_kind       "non_embedding" (Kaplan) or "total" (Chinchilla): what model_sizes mean
    model_sizes  target parameter counts (isoflop: a list per budget, or one list for all)
    tokens       training tokens D: one number ("n") or a list ("d", "approach1")
    budgets      isoflop only: FLOP budgets C
    unique_tokens  epochs only: U, the unique tokens every run trains on (data.unique_tokens,
                 lm.data.repeat): a multiple of batch_size * seq_len, so each epoch is whole steps
    epochs       epochs only: the repetitions R; each run trains on D = U * R tokens
    unique_baseline  epochs only, optional (default False): also, for each R > 1, a run on
                 U * R unique tokens seen once, the fresh-data baseline of the same D
    flops        isoflop only: "6n" (D = C / 6N) or "exact" (Chinchilla appendix F)
    family       optional `ShapeFamily` fields: head_dim, min_aspect, max_aspect, ffn_multiple
    n_tolerance  optional relative tolerance of the planned N (default 0.1)
    rules        optional {"section.field": callable(point) -> value}: a field set per point,
                 e.g. Porian et al.'s warmup of N tokens:
                 "train.warmup_steps": lambda p: max(1, round(p.n / (p.batch_size * p.seq_len)))
    tune         optional {"section.field": [values] or callable(point) -> [values]}: grids
                 tuned per point, e.g. "train.lr": [3e-3, 1e-2], or one centred on a rule,
                 "train.lr": lambda p: [f * lr_rule(p) for f in (0.5, 1, 2)]

A sweep plans points (a model size and a token count, or a budget); each point is
one run, or with `tune` one run per combination of the tune values (the grids'
Cartesian product, in the order given), its members. A member is named after its
point plus its tuned values, `C5e9-d32-L1_lr0.003` (`lm.sweep.tune`), and trains as
an ordinary run; results.csv marks the best member of each point.

Each run's config is, in this order: base; command-line overrides; the planned
model shape (approach1 also sets `train.schedule=cosine`); the rules' values; the
member's tune values (overriding a rule for the same field); `train.steps` for the
point's tokens at the run's own batch size and seq_len (so tuning train.batch_size
keeps D and changes the steps); validated. Where rules or tune change train.batch_size (and
not train.eval_batches), eval_batches is scaled so that every member of a point evaluates
the same held-out rows, the base batch_size x eval_batches (the batch sizes must divide it).
Rules and tune cannot set the fields the planner sets (PLANNED_FIELDS, plus
data.unique_tokens for epochs) nor those the sweep's one data preparation decides
(SHARED_DATA_FIELDS), and a command-line override of a ruled or tuned field is refused.

The callables receive the planned point, a `lm.sweep.plan.PlannedPoint`:

    name             the point's run name (members add their suffix to it)
    n                parameters in the sweep's n_kind; also n_total, n_non_embedding
    tokens           D planned for the point (before rounding to whole steps)
    budget           the IsoFLOP budget C (None for other kinds)
    d_model, num_layers, num_heads, d_ff, vocab_size     the planned model
    seq_len, batch_size      the base config's (before rules and tune)
    flops_per_token  exact training FLOPs per token (lm.scaling.counts.train_flops_per_token)

A callable that raises, or a value the config refuses, is a ConfigError naming the
field and the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import numbers
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections

from lm.config import (PREPARED_REPLACES, ConfigError, apply_overrides, call_python_file, default_config,
                       load_config, merge, parse_override, validate)
from lm.sweep.plan import (FLOPS_KINDS, N_KINDS, PlannedPoint, RunSpec, ShapeFamily, compact,
                           config_overrides, field_value, planned_point, run_spec, shape_for_params,
                           steps_for_tokens, tokens_for_budget)
from lm.sweep.tune import describe, members, nested, parse_rules, parse_tune

KINDS = ("n", "d", "isoflop", "approach1", "epochs")
_COMMON = ("base", "kind", "n_kind", "model_sizes", "family", "n_tolerance", "rules", "tune")
_KEYS = {"n": _COMMON + ("tokens",), "d": _COMMON + ("tokens",),
         "approach1": _COMMON + ("tokens",), "isoflop": _COMMON + ("budgets", "flops"),
         "epochs": _COMMON + ("unique_tokens", "epochs", "unique_baseline")}
_ALL_KEYS = sorted(set(itertools.chain.from_iterable(_KEYS.values())))
DEFAULT_TOLERANCE = 0.1
# Fields the planner (and the runner: data.prepared_dir) sets in every run.
PLANNED_FIELDS = ("model.num_layers", "model.d_model", "model.num_heads", "model.num_kv_heads",
                  "model.d_ff", "model.head_dim", "train.steps", "data.prepared_dir")
# Fields the data, prepared once from the first run's config for every run, depends on.
SHARED_DATA_FIELDS = ("model.vocab_size", "data.prepared_corpus",
                      *(f"data.{key}" for key in PREPARED_REPLACES))


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated sweep config. `model_sizes` holds one tuple of targets per budget for
    isoflop and a single tuple otherwise; `tokens` and `budgets` are empty where unused."""

    kind: str
    base: dict[str, Any]
    n_kind: str
    model_sizes: tuple[tuple[float, ...], ...]
    tokens: tuple[float, ...] = ()
    budgets: tuple[float, ...] = ()
    flops: str = ""
    family: ShapeFamily = ShapeFamily()
    n_tolerance: float = DEFAULT_TOLERANCE
    rules: dict[str, Callable[[PlannedPoint], Any]] = dataclasses.field(default_factory=dict)
    tune: dict[str, Any] = dataclasses.field(default_factory=dict)
    unique_tokens: int = 0
    epochs: tuple[float, ...] = ()
    unique_baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for sweep.json); rules and callable grids by `describe`."""
        return {**dataclasses.asdict(self), "rules": describe(self.rules), "tune": describe(self.tune)}


def planned_fields(kind: str) -> tuple[str, ...]:
    """The fields the sweep sets in every run of `kind` (approach1 also sets train.schedule,
    epochs data.unique_tokens)."""
    extra = {"approach1": ("train.schedule",), "epochs": ("data.unique_tokens",)}
    return PLANNED_FIELDS + extra.get(kind, ())


def _fail(field: str, message: str) -> None:
    raise ConfigError(f"sweep field '{field}': {message}")


def _numbers(field: str, value: Any) -> tuple[float, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        _fail(field, "is empty; give at least one positive number")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            _fail(field, f"{v!r} is not a positive number")
    return tuple(float(v) for v in values)


def _family(value: Any) -> ShapeFamily:
    if not isinstance(value, dict):
        _fail("family", f"must be a dict of ShapeFamily fields, got {value!r}")
    names = [f.name for f in dataclasses.fields(ShapeFamily)]
    for key in value:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            _fail(f"family.{key}", "unknown key" + (f"; did you mean 'family.{near[0]}'?" if near else
                                                    f"; known: {', '.join(names)}"))
    family = ShapeFamily(**value)
    for name in ("head_dim", "ffn_multiple", "num_layers"):
        v = getattr(family, name)
        least = 0 if name == "num_layers" else 1  # num_layers 0: any depth in the aspect band
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            _fail(f"family.{name}", f"must be an integer >= {least}, got {v!r}")
    if family.head_dim % 2:
        _fail("family.head_dim", f"rotary embeddings need an even head_dim, got {family.head_dim}")
    if not 0 < family.min_aspect <= family.max_aspect:
        _fail("family.min_aspect", f"need 0 < min_aspect <= max_aspect, got "
              f"{family.min_aspect} and {family.max_aspect}")
    return family


def _base(value: Any, sweep_dir: Path) -> dict[str, Any]:
    """The base config's overrides: a dict as given, or a path's get_config() (validated)."""
    if isinstance(value, (dict, ml_collections.ConfigDict)):
        overrides = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)
        try:
            validate(merge(default_config(), overrides))
        except ConfigError as err:
            _fail("base", str(err))
        return overrides
    if not isinstance(value, str):
        _fail("base", f"must be an experiment config path or a dict of overrides, got {value!r}")
    path = Path(value) if Path(value).is_absolute() else sweep_dir / value
    if not path.is_file():
        _fail("base", f"{path} does not exist (relative paths are relative to the sweep file)")
    try:
        cfg = load_config(path)
    except ConfigError as err:
        _fail("base", str(err))
    return config_overrides(cfg)


def parse_sweep(raw: dict[str, Any], sweep_dir: Path = Path(".")) -> Sweep:
    """Validate a `get_sweep()` dict; raise ConfigError naming the bad field and its fix."""
    if isinstance(raw, ml_collections.ConfigDict):
        raw = raw.to_dict()
    if not isinstance(raw, dict):
        raise ConfigError(f"get_sweep() must return a dict or ConfigDict, got {type(raw).__name__}")
    for key in raw:
        if key not in _ALL_KEYS:
            near = difflib.get_close_matches(key, _ALL_KEYS, n=1)
            _fail(key, "unknown key" + (f"; did you mean '{near[0]}'?" if near else ""))
    for key in ("base", "kind", "n_kind", "model_sizes"):
        if key not in raw:
            _fail(key, "is required")
    kind = raw["kind"]
    if kind not in KINDS:
        _fail("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    for key in raw:
        if key not in _KEYS[kind]:
            _fail(key, f"is not used by kind '{kind}'; remove it")
    required = {"isoflop": ("budgets", "flops"), "epochs": ("unique_tokens", "epochs")}.get(
        kind, ("tokens",))
    for key in required:
        if key not in raw:
            _fail(key, f"is required for kind '{kind}'")
    if raw["n_kind"] not in N_KINDS:
        _fail("n_kind", f"{raw['n_kind']!r} is not one of {', '.join(N_KINDS)}")
    tolerance = raw.get("n_tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0 < tolerance < 1:
        _fail("n_tolerance", f"must be a fraction in (0, 1), got {tolerance!r}")

    fields: dict[str, Any] = {}
    sizes = raw["model_sizes"]
    if kind == "isoflop":
        budgets = _numbers("budgets", raw["budgets"])
        if raw["flops"] not in FLOPS_KINDS:
            _fail("flops", f"{raw['flops']!r} is not one of {', '.join(FLOPS_KINDS)}")
        nested = isinstance(sizes, (list, tuple)) and sizes and isinstance(sizes[0], (list, tuple))
        if nested and len(sizes) != len(budgets):
            _fail("model_sizes", f"has {len(sizes)} lists for {len(budgets)} budgets; give one list "
                  "per budget, or a single list for all")
        per_budget = sizes if nested else [sizes] * len(budgets)
        fields.update(budgets=budgets, flops=raw["flops"], model_sizes=tuple(
            _numbers(f"model_sizes[{i}]", s) for i, s in enumerate(per_budget)))
    elif kind == "epochs":
        unique = raw["unique_tokens"]
        if isinstance(unique, bool) or not isinstance(unique, numbers.Integral) or unique <= 0:
            _fail("unique_tokens", f"must be a positive whole number of tokens, got {unique!r}")
        if not isinstance(raw.get("unique_baseline", False), bool):
            _fail("unique_baseline", f"must be True or False, got {raw['unique_baseline']!r}")
        fields.update(model_sizes=(_numbers("model_sizes", sizes),), unique_tokens=int(unique),
                      epochs=_numbers("epochs", raw["epochs"]),
                      unique_baseline=raw.get("unique_baseline", False))
    else:
        fields.update(model_sizes=(_numbers("model_sizes", sizes),),
                      tokens=_numbers("tokens", raw["tokens"]))
        if kind == "n" and len(fields["tokens"]) != 1:
            _fail("tokens", f"kind 'n' trains every size on one token count, got {len(fields['tokens'])}")
        if kind == "d" and len(fields["model_sizes"][0]) != 1:
            _fail("model_sizes", f"kind 'd' trains one model size, got {len(fields['model_sizes'][0])}")
    fixed = {**dict.fromkeys(planned_fields(kind), "is set by the sweep planner in every run"),
             **dict.fromkeys(SHARED_DATA_FIELDS, "decides the data the sweep prepares once for all runs")}
    return Sweep(kind=kind, base=_base(raw["base"], sweep_dir), n_kind=raw["n_kind"],
                 family=_family(raw.get("family", {})), n_tolerance=float(tolerance),
                 rules=parse_rules(raw.get("rules", {}), fixed),
                 tune=parse_tune(raw.get("tune", {}), fixed), **fields)


def load_sweep(path: str | Path) -> Sweep:
    """Load and validate the sweep file `path` (its `get_sweep()`)."""
    path = Path(path)
    raw = call_python_file(path, "get_sweep", kind="sweep")
    try:
        return parse_sweep(raw, path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def base_config(sweep: Sweep, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The sweep's base config with `--config.S.F=V` overrides applied (not yet validated)."""
    for arg in overrides:
        keys, _ = parse_override(arg.removeprefix("--"))
        field = ".".join(keys)
        if field in planned_fields(sweep.kind):
            raise ConfigError(f"config field '{field}' is set by the sweep for every run; "
                              "change the sweep file instead of overriding it")
        for key, entries in (("tune", sweep.tune), ("rules", sweep.rules)):
            if field in entries:
                raise ConfigError(f"config field '{field}' is set per run by the sweep's "
                                  f"'{key}.{field}'; change the sweep file instead of overriding it")
    return apply_overrides(merge(default_config(), sweep.base), overrides)


def expand(sweep: Sweep, overrides: Sequence[str] = (), prepared_dir: str = "") -> list[RunSpec]:
    """Every run of the sweep, in order (a tuned point's members together). `overrides`
    (`--config.S.F=V`) apply to every run; `prepared_dir` (when given) is set as every
    run's `data.prepared_dir`."""
    base = base_config(sweep, overrides)
    if prepared_dir:
        base.data.prepared_dir = prepared_dir
    if sweep.kind == "isoflop":
        points = [(budget, target, None) for budget, sizes in zip(sweep.budgets, sweep.model_sizes)
                  for target in sizes]
    elif sweep.kind == "epochs":
        points = [(None, target, (unique, unique * epochs)) for target in sweep.model_sizes[0]
                  for unique, epochs in epoch_runs(sweep)]
    else:
        points = [(None, target, tokens) for target in sweep.model_sizes[0] for tokens in sweep.tokens]
    specs, seen = [], {}
    for budget, target, tokens in points:
        shape = shape_for_params(target, base.model, sweep.family, n_kind=sweep.n_kind,
                                 tolerance=sweep.n_tolerance)
        cfg = ml_collections.ConfigDict(base.to_dict())
        cfg.model.update(shape.model_overrides())
        planned = {}
        if sweep.kind == "epochs":
            unique, tokens = tokens
            planned = {"data.unique_tokens": unique}
            cfg.data.unique_tokens = unique
        if budget is not None:
            tokens = tokens_for_budget(budget, cfg.model, cfg.data.seq_len, flops=sweep.flops,
                                       n_kind=sweep.n_kind)
        if sweep.kind == "approach1":
            cfg.train.schedule = "cosine"
        name = _name(sweep.kind, shape.d_model, shape.num_layers, tokens, budget,
                     planned.get("data.unique_tokens"))
        where = f"model size {target:,.0f}, tokens {tokens:,.0f}"
        if name in seen:
            raise ConfigError(f"two points of the sweep ({seen[name]}; {where}) both plan run "
                              f"{name}; spread the model sizes or token counts further apart")
        seen[name] = where
        point = planned_point(name, cfg, n_kind=sweep.n_kind, tokens=tokens, budget=budget)
        for suffix, values in members(sweep.rules, sweep.tune, point):
            specs.append(_member(sweep, cfg, point, name + suffix, {**planned, **values}))
    return specs


def _member(sweep: Sweep, point_cfg: ml_collections.ConfigDict, point: PlannedPoint, name: str,
            values: dict[str, Any]) -> RunSpec:
    """The run `name` of `point`: the point's config with `values` (rules, then tune) and the
    steps for the point's tokens at the run's batch size, validated."""
    cfg = ml_collections.ConfigDict(point_cfg.to_dict())
    for field, value in values.items():
        try:
            merge(cfg, nested(field, value))
        except ConfigError as err:
            key = "tune" if field in sweep.tune else "rules"
            raise ConfigError(f"sweep field '{key}.{field}' for run {name}: {err}") from None
    _same_eval_rows(cfg, point, values, name)
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    if cfg.data.unique_tokens % tokens_per_step:
        raise ConfigError(f"run {name}: data.unique_tokens={cfg.data.unique_tokens:,} is not a "
                          f"multiple of train.batch_size x data.seq_len = {tokens_per_step:,}, so "
                          "its epochs would not be whole steps; round it to a multiple")
    cfg.train.steps = steps_for_tokens(point.tokens, cfg.train.batch_size, cfg.data.seq_len)
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"run {name}: {err}") from None
    return run_spec(name, cfg, n_kind=sweep.n_kind, budget=point.budget, point=point.name,
                    hparams={field: field_value(cfg, field) for field in values})


def epoch_runs(sweep: Sweep) -> list[tuple[int, float]]:
    """(unique tokens, epochs) of each run per model size of an epochs sweep: U at every R,
    then with unique_baseline U * R unique tokens once for each R > 1."""
    runs = [(sweep.unique_tokens, r) for r in sweep.epochs]
    if sweep.unique_baseline:
        runs += [(round(sweep.unique_tokens * r), 1.0) for r in sweep.epochs if r > 1]
    return runs


def _same_eval_rows(cfg: ml_collections.ConfigDict, point: PlannedPoint, values: dict[str, Any],
                    name: str) -> None:
    """Where rules or tune set train.batch_size (not eval_batches): scale eval_batches so the
    member evaluates the point's base batch_size x eval_batches held-out rows."""
    if "train.batch_size" not in values or "train.eval_batches" in values:
        return
    rows = point.batch_size * cfg.train.eval_batches
    if rows % cfg.train.batch_size:
        raise ConfigError(f"run {name}: train.batch_size={cfg.train.batch_size} does not divide "
                          f"the {rows} held-out rows every member of the point evaluates (base "
                          "batch_size x train.eval_batches); choose batch sizes that divide it, "
                          "or tune train.eval_batches too")
    cfg.train.eval_batches = rows // cfg.train.batch_size


def _name(kind: str, d_model: int, layers: int, tokens: float, budget: float | None,
          unique: int | None = None) -> str:
    shape = f"d{d_model}-L{layers}"
    if kind == "epochs":
        return f"{shape}-U{compact(unique)}-R{compact(tokens / unique)}"
    if kind == "isoflop":
        return f"C{compact(budget)}-{shape}"
    if kind == "n":
        return shape
    if kind == "d":
        return f"D{compact(tokens)}"
    return f"{shape}-D{compact(tokens)}"
