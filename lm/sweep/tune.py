"""A sweep's `rules` and `tune`: hyperparameters set per point, and grids of them.

`rules` maps a config field ("train.warmup_steps") to a callable of the planned point
(`lm.sweep.plan.PlannedPoint`) returning the field's value there; `tune` maps a field
to a list of values, or to a callable of the point returning one. Each combination of
the tune grids (their Cartesian product, in the order given) is one member of the
point, an ordinary run named after the point plus a suffix of its tuned values
(`C5e9-d32-L1_lr0.003`). See lm.sweep.grid for where they sit in a run's config.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import numbers
import re
from typing import Any, Callable, Iterable, Mapping

import ml_collections

from lm.config import ConfigError, default_config, merge
from lm.sweep.plan import PlannedPoint, compact

Rule = Callable[[PlannedPoint], Any]


def _fail(key: str, message: str, run: str = "") -> None:
    where = f" for run {run}" if run else ""
    raise ConfigError(f"sweep field '{key}'{where}: {message}")


def _leaves(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    fields = []
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            fields += _leaves(value, f"{prefix}{key}.")
        else:
            fields.append(f"{prefix}{key}")
    return fields


def nested(field: str, value: Any) -> dict[str, Any]:
    """{"train": {"lr": value}} for field "train.lr": overrides for `lm.config.merge`."""
    for key in reversed(field.split(".")):
        value = {key: value}
    return value


def _check_fields(key: str, value: Any, fixed: Mapping[str, str]) -> None:
    """`value` must be a dict keyed by config fields that the sweep does not fix (`fixed`:
    field -> why not)."""
    if not isinstance(value, dict):
        _fail(key, f"must be a dict keyed by config field ('train.lr'), got {value!r}")
    schema = default_config()
    leaves = _leaves(schema)
    for field in value:
        if not isinstance(field, str):
            _fail(key, f"keys must name config fields like 'train.lr', got {field!r}")
        if field in fixed:
            _fail(f"{key}.{field}", f"{fixed[field]}, so it cannot be tuned or ruled")
        if field in leaves:
            continue
        if any(leaf.startswith(f"{field}.") for leaf in leaves):
            _fail(f"{key}.{field}", "is a config section; name one of its fields")
        near = ([leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] == field]
                or difflib.get_close_matches(field, leaves, n=1))
        _fail(f"{key}.{field}", "unknown config field" + (
            f"; did you mean '{key}.{near[0]}'?" if near else f"; name one as 'section.field', "
            f"the sections being {', '.join(schema.keys())}"))


def parse_rules(value: Any, fixed: Mapping[str, str]) -> dict[str, Rule]:
    """Validate a sweep's `rules`: config fields (not in `fixed`) to callables."""
    _check_fields("rules", value, fixed)
    for field, rule in value.items():
        if not callable(rule):
            _fail(f"rules.{field}", f"must be a callable of the planned point, got {rule!r}; "
                  "put a fixed value in base")
    return dict(value)


def parse_tune(value: Any, fixed: Mapping[str, str]) -> dict[str, Any]:
    """Validate a sweep's `tune`: config fields (not in `fixed`) to value lists (checked
    here) or callables (whose lists are checked per point, by `members`)."""
    _check_fields("tune", value, fixed)
    return {field: grid if callable(grid) else check_grid(field, grid)
            for field, grid in value.items()}


def check_grid(field: str, grid: Any, run: str = "") -> tuple[Any, ...]:
    """The values of `tune.<field>` (from the point `run` when a callable gave them): a
    non-empty list of distinct values of the field's type, distinct in run names too."""
    key = f"tune.{field}"
    if not isinstance(grid, (list, tuple)):
        _fail(key, f"must be a list of values (or a callable of the planned point returning "
              f"one), got {grid!r}", run)
    if not grid:
        _fail(key, "is empty; give at least one value", run)
    for value in grid:
        try:
            merge(default_config(), nested(field, value))
        except ConfigError as err:
            _fail(key, str(err), run)
    labels: dict[str, Any] = {}
    for i, value in enumerate(grid):
        if value in grid[:i]:
            _fail(key, f"{value!r} appears twice; give distinct values", run)
        other = labels.setdefault(label(value), value)
        if other is not value:
            _fail(key, f"{other!r} and {value!r} both read '{label(value)}' in run names; make "
                  "numbers differ in their first 3 significant digits, text in its letters, "
                  "digits or . + -", run)
    return tuple(grid)


def label(value: Any) -> str:
    """A tuned value in a run name: integers exact, other numbers by `compact`, anything
    else as file-name-safe text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return compact(value)
    text = "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def aliases(fields: Iterable[str]) -> dict[str, str]:
    """Short names of fields in run names and status: the part after the last dot, or the
    whole name with '-' for dots where two fields share that part (data.seed, train.seed)."""
    fields = list(fields)
    short = [field.rsplit(".", 1)[-1] for field in fields]
    return {field: s if short.count(s) == 1 else field.replace(".", "-")
            for field, s in zip(fields, short)}


def _call(key: str, function: Callable[[PlannedPoint], Any], point: PlannedPoint) -> Any:
    try:
        return function(point)
    except Exception as err:
        raise ConfigError(f"sweep field '{key}' failed for run {point.name}: "
                          f"{type(err).__name__}: {err}") from err


def members(rules: Mapping[str, Rule], tune: Mapping[str, Any],
            point: PlannedPoint) -> list[tuple[str, dict[str, Any]]]:
    """The members of `point` as (run-name suffix, {field: value}): the rules' values, then
    one combination of the tune values over them. Without tune: one member, suffix ''."""
    ruled = {field: _call(f"rules.{field}", rule, point) for field, rule in rules.items()}
    grids = {field: check_grid(field, _call(f"tune.{field}", grid, point), point.name)
             if callable(grid) else grid for field, grid in tune.items()}
    names = aliases(grids)
    result = []
    for combination in itertools.product(*grids.values()):
        tuned = dict(zip(grids, combination))
        suffix = "".join(f"_{names[field]}{label(value)}" for field, value in tuned.items())
        result.append((suffix, {**ruled, **tuned}))
    return result


def describe(entries: Mapping[str, Any]) -> dict[str, Any]:
    """Rules or tune as JSON (for sweep.json): value lists as lists, callables by their
    qualified name and, where Python can find it, their source line(s)."""
    def one(entry: Any) -> Any:
        if not callable(entry):
            return list(entry)
        name = getattr(entry, "__qualname__", repr(entry))
        try:
            return f"{name}: {inspect.getsource(entry).strip()}"
        except (OSError, TypeError):
            return name

    return {field: one(entry) for field, entry in entries.items()}
