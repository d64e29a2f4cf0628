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
    n_kind       "non_embedding" (Kaplan) or "total" (Chinchilla): what model_sizes mean
    model_sizes  target parameter counts (isoflop: a list per budget, or one list for all)
    tokens       training tokens D: one number ("n") or a list ("d", "approach1")
    budgets      isoflop only: FLOP budgets C
    flops        isoflop only: "6n" (D = C / 6N) or "exact" (Chinchilla appendix F)
    family       optional `ShapeFamily` fields: head_dim, min_aspect, max_aspect, ffn_multiple
    n_tolerance  optional relative tolerance of the planned N (default 0.1)

Each run's config is base, then command-line overrides, then the planned model
shape and `train.steps` (approach1 also sets `train.schedule=cosine`), validated.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import numbers
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from lm.config import (ConfigError, apply_overrides, call_python_file, default_config, load_config, merge, parse_override,
                       validate)
from lm.sweep.plan import (FLOPS_KINDS, N_KINDS, RunSpec, ShapeFamily, compact, config_overrides,
                           run_spec, shape_for_params, steps_for_tokens, tokens_for_budget)

KINDS = ("n", "d", "isoflop", "approach1")
_COMMON = ("base", "kind", "n_kind", "model_sizes", "family", "n_tolerance")
_KEYS = {"n": _COMMON + ("tokens",), "d": _COMMON + ("tokens",),
         "approach1": _COMMON + ("tokens",), "isoflop": _COMMON + ("budgets", "flops")}
_ALL_KEYS = sorted(set(itertools.chain.from_iterable(_KEYS.values())))
DEFAULT_TOLERANCE = 0.1
# Fields the planner (and the runner: data.prepared_dir) sets in every run.
PLANNED_FIELDS = ("model.num_layers", "model.d_model", "model.num_heads", "model.num_kv_heads",
                  "model.d_ff", "model.head_dim", "train.steps", "data.prepared_dir")


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for sweep.json)."""
        return dataclasses.asdict(self)


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
    for name in ("head_dim", "ffn_multiple"):
        v = getattr(family, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            _fail(f"family.{name}", f"must be a positive integer, got {v!r}")
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
    required = ("budgets", "flops") if kind == "isoflop" else ("tokens",)
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
    else:
        fields.update(model_sizes=(_numbers("model_sizes", sizes),),
                      tokens=_numbers("tokens", raw["tokens"]))
        if kind == "n" and len(fields["tokens"]) != 1:
            _fail("tokens", f"kind 'n' trains every size on one token count, got {len(fields['tokens'])}")
        if kind == "d" and len(fields["model_sizes"][0]) != 1:
            _fail("model_sizes", f"kind 'd' trains one model size, got {len(fields['model_sizes'][0])}")
    return Sweep(kind=kind, base=_base(raw["base"], sweep_dir), n_kind=raw["n_kind"],
                 family=_family(raw.get("family", {})), n_tolerance=float(tolerance), **fields)


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
        if ".".join(keys) in PLANNED_FIELDS or (sweep.kind == "approach1" and keys == ["train", "schedule"]):
            raise ConfigError(f"config field '{'.'.join(keys)}' is set by the sweep for every run; "
                              "change the sweep file instead of overriding it")
    return apply_overrides(merge(default_config(), sweep.base), overrides)


def expand(sweep: Sweep, overrides: Sequence[str] = (), prepared_dir: str = "") -> list[RunSpec]:
    """Every run of the sweep, in order. `overrides` (`--config.S.F=V`) apply to every run;
    `prepared_dir` (when given) is set as every run's `data.prepared_dir`."""
    base = base_config(sweep, overrides)
    if prepared_dir:
        base.data.prepared_dir = prepared_dir
    batch_size, seq_len = base.train.batch_size, base.data.seq_len
    if sweep.kind == "isoflop":
        points = [(budget, target, None) for budget, sizes in zip(sweep.budgets, sweep.model_sizes)
                  for target in sizes]
    else:
        points = [(None, target, tokens) for target in sweep.model_sizes[0] for tokens in sweep.tokens]
    specs, seen = [], {}
    for budget, target, tokens in points:
        shape = shape_for_params(target, base.model, sweep.family, n_kind=sweep.n_kind,
                                 tolerance=sweep.n_tolerance)
        cfg = ml_collections.ConfigDict(base.to_dict())
        cfg.model.update(shape.model_overrides())
        if budget is not None:
            tokens = tokens_for_budget(budget, cfg.model, seq_len, flops=sweep.flops, n_kind=sweep.n_kind)
        cfg.train.steps = steps_for_tokens(tokens, batch_size, seq_len)
        if sweep.kind == "approach1":
            cfg.train.schedule = "cosine"
        name = _name(sweep.kind, shape.d_model, shape.num_layers, tokens, budget)
        point = f"model size {target:,.0f}, tokens {tokens:,.0f}"
        if name in seen:
            raise ConfigError(f"two points of the sweep ({seen[name]}; {point}) both plan run "
                              f"{name}; spread the model sizes or token counts further apart")
        seen[name] = point
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"run {name}: {err}") from None
        specs.append(run_spec(name, cfg, n_kind=sweep.n_kind, budget=budget))
    return specs


def _name(kind: str, d_model: int, layers: int, tokens: float, budget: float | None) -> str:
    shape = f"d{d_model}-L{layers}"
    if kind == "isoflop":
        return f"C{compact(budget)}-{shape}"
    if kind == "n":
        return shape
    if kind == "d":
        return f"D{compact(tokens)}"
    return f"{shape}-D{compact(tokens)}"
