"""Study files (`experiments/studies/*.py`, described in lm.sweep.study): validation into a
`Study`, every error a ConfigError naming the field (`study field 'steps[2].fit.members'`)
and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from pathlib import Path
from typing import Any

from lm.config import ConfigError, call_python_file
from lm.scaling.design import DEFAULT_RTOL
from lm.scaling.laws import C_CONVENTIONS, N_CONVENTIONS
from lm.scaling.table import LOSS_KINDS
from lm.sweep.grid import Sweep, load_sweep
from lm.sweep.results import HPARAM_PREFIX, hparam_fields

METHODS = ("approach2", "approach3")
C_OF_FLOPS = {"6n": "6ND", "exact": "exact"}  # a sweep's `flops` as a fit's c_convention
_STUDY_KEYS = ("steps", "method", "bootstrap", "seed", "backtest")
_STEP_KEYS = ("name", "title", "sweep", "fit")
_FIT_KEYS = ("n_convention", "c_convention", "members", "loss", "keep_unbracketed", "rtol")
_BACKTEST_KEYS = ("step", "factor", "methods", "size_from")


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """How a step's sweep results are fitted (the `lm fit --sweep` options of the same name)."""

    n_convention: str
    c_convention: str
    members: str = "best"
    loss: str = "heldout"
    keep_unbracketed: bool = False
    rtol: float = DEFAULT_RTOL


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the study: a sweep (its file, absolute, and its validated config) and its fit."""

    name: str
    title: str
    sweep_file: Path
    sweep: Sweep
    fit: FitSpec

    @property
    def sweep_name(self) -> str:
        """The sweep's directory name under DIR/sweeps/: its file's stem."""
        return self.sweep_file.stem


@dataclasses.dataclass(frozen=True)
class BacktestSpec:
    step: str
    factor: float
    methods: tuple[str, ...]
    size_from: str


@dataclasses.dataclass(frozen=True)
class Study:
    """A validated study file (`path`: the file, absolute)."""

    path: Path
    steps: tuple[Step, ...]
    method: str = "approach2"
    bootstrap: int = 0
    seed: int = 0
    backtest: BacktestSpec | None = None

    def sweeps(self) -> dict[str, Path]:
        """Each distinct sweep file by its directory name, in the order steps first use them."""
        return {step.sweep_name: step.sweep_file for step in self.steps}

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)


def _fail(field: str, message: str) -> None:
    raise ConfigError(f"study field '{field}': {message}")


def _check_keys(prefix: str, value: Any, known: tuple[str, ...]) -> dict[str, Any]:
    """`value` must be a dict whose keys are among `known`; `prefix` names it ('' at the top)."""
    if not isinstance(value, dict):
        what = f"study field '{prefix}'" if prefix else "get_study()"
        raise ConfigError(f"{what} must be a dict, got {type(value).__name__}")
    dot = f"{prefix}." if prefix else ""
    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            _fail(f"{dot}{key}", "unknown key" + (f"; did you mean '{dot}{near[0]}'?" if near
                                                  else f"; known: {', '.join(known)}"))
    return value


def _method(field: str, value: Any) -> str:
    if value not in METHODS:
        _fail(field, f"{value!r} is not one of {', '.join(METHODS)}")
    return value


def _integer(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        _fail(field, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _sweep(field: str, value: Any, study_dir: Path) -> tuple[Path, Sweep]:
    if not isinstance(value, str) or not value:
        _fail(field, f"must be a sweep file path, got {value!r}")
    path = (study_dir / value).resolve()
    if not path.is_file():
        _fail(field, f"{path} does not exist (relative paths are relative to the study file)")
    try:
        sweep = load_sweep(path)
    except ConfigError as err:
        _fail(field, str(err))
    if sweep.kind != "isoflop":
        _fail(field, f"{path} is a kind '{sweep.kind}' sweep; a study fits IsoFLOP sweeps "
              "(kind 'isoflop')")
    return path, sweep


def _members(field: str, value: Any, sweep: Sweep) -> str:
    """best, all, or FIELD=VALUE with FIELD one of the sweep's hp.* columns (and VALUE in its
    tune grid, when that is a list)."""
    if not isinstance(value, str):
        _fail(field, f"must be 'best', 'all' or 'FIELD=VALUE', got {value!r}")
    if value in ("best", "all"):
        return value
    name, _, text = value.partition("=")
    name = name.strip().removeprefix(HPARAM_PREFIX)
    known = hparam_fields([*sweep.rules, *sweep.tune])
    if not text.strip() or name not in known:
        _fail(field, f"{value!r}: give best, all or FIELD=VALUE with FIELD one of "
              f"{', '.join(known)} (the sweep's hp.* columns)")
    grid = sweep.tune.get(name)
    if isinstance(grid, tuple) and not any(_same(v, text) for v in grid):
        _fail(field, f"{value!r}: {text.strip()} is not among the sweep's tune.{name} values "
              f"({', '.join(map(str, grid))})")
    return value


def _same(value: Any, text: str) -> bool:
    """A grid value equals the text of a members filter (as numbers where both are)."""
    try:
        return float(value) == float(text)
    except (TypeError, ValueError):
        return str(value) == text.strip()


def _fit(field: str, value: Any, sweep: Sweep) -> FitSpec:
    raw = _check_keys(field, value, _FIT_KEYS)
    n_convention = raw.get("n_convention", sweep.n_kind)
    if n_convention not in N_CONVENTIONS:
        _fail(f"{field}.n_convention", f"{n_convention!r} is not one of {', '.join(N_CONVENTIONS)}")
    c_convention = raw.get("c_convention", C_OF_FLOPS[sweep.flops])
    if c_convention not in C_CONVENTIONS:
        _fail(f"{field}.c_convention", f"{c_convention!r} is not one of {', '.join(C_CONVENTIONS)}")
    loss = raw.get("loss", "heldout")
    if loss not in LOSS_KINDS:
        _fail(f"{field}.loss", f"{loss!r} is not one of {', '.join(LOSS_KINDS)}")
    keep = raw.get("keep_unbracketed", False)
    if not isinstance(keep, bool):
        _fail(f"{field}.keep_unbracketed", f"must be True or False, got {keep!r}")
    rtol = raw.get("rtol", DEFAULT_RTOL)
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 <= rtol < 1:
        _fail(f"{field}.rtol", f"must be a number in [0, 1), got {rtol!r}")
    return FitSpec(n_convention, c_convention, _members(f"{field}.members",
                                                        raw.get("members", "best"), sweep),
                   loss, keep, float(rtol))


def _steps(value: Any, study_dir: Path) -> tuple[Step, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        _fail("steps", f"must be a non-empty list of steps, got {value!r}")
    steps: list[Step] = []
    stems: dict[str, Path] = {}
    for i, raw in enumerate(value):
        field = f"steps[{i}]"
        raw = _check_keys(field, raw, _STEP_KEYS)
        for key in ("name", "sweep"):
            if key not in raw:
                _fail(f"{field}.{key}", "is required")
        name, title = raw["name"], raw.get("title", "")
        if not isinstance(name, str) or not name.strip():
            _fail(f"{field}.name", f"must be a non-empty string, got {name!r}")
        earlier = next((j for j, step in enumerate(steps) if step.name == name), None)
        if earlier is not None:
            _fail(f"{field}.name", f"{name!r} is also the name of steps[{earlier}]; give each "
                  "step its own")
        if not isinstance(title, str):
            _fail(f"{field}.title", f"must be a string, got {title!r}")
        path, sweep = _sweep(f"{field}.sweep", raw["sweep"], study_dir)
        if stems.setdefault(path.stem, path) != path:
            _fail(f"{field}.sweep", f"{path} and {stems[path.stem]} share the name "
                  f"'{path.stem}' (their runs go to DIR/sweeps/{path.stem}); rename one")
        fit = _fit(f"{field}.fit", raw.get("fit", {}), sweep)
        steps.append(Step(name, title, path, sweep, fit))
    return tuple(steps)


def _backtest(value: Any, steps: tuple[Step, ...], method: str) -> BacktestSpec:
    raw = _check_keys("backtest", value, _BACKTEST_KEYS)
    for key in ("step", "factor"):
        if key not in raw:
            _fail(f"backtest.{key}", "is required")
    names = [step.name for step in steps]
    if raw["step"] not in names:
        _fail("backtest.step", f"{raw['step']!r} is not a step name ({', '.join(names)})")
    factor = raw["factor"]
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not factor > 1:
        _fail("backtest.factor", f"must be a number > 1 (the backtest budget is factor x the "
              f"step's largest budget), got {factor!r}")
    methods = raw.get("methods", [method])
    if not isinstance(methods, (list, tuple)) or not methods:
        _fail("backtest.methods", f"must be a non-empty list of {', '.join(METHODS)}, got "
              f"{methods!r}")
    for i, name in enumerate(methods):
        _method(f"backtest.methods[{i}]", name)
        if name in methods[:i]:
            _fail(f"backtest.methods[{i}]", f"{name!r} appears twice")
    return BacktestSpec(raw["step"], float(factor), tuple(methods),
                        _method("backtest.size_from", raw.get("size_from", method)))


def parse_study(raw: Any, path: Path) -> Study:
    """Validate a `get_study()` dict from the study file `path` (sweep paths are relative to
    its directory)."""
    raw = _check_keys("", raw, _STUDY_KEYS)
    if "steps" not in raw:
        _fail("steps", "is required")
    method = _method("method", raw.get("method", "approach2"))
    bootstrap = _integer("bootstrap", raw.get("bootstrap", 0), 0)
    if bootstrap == 1:
        _fail("bootstrap", "must be 0 (no intervals) or >= 2 resamples, got 1")
    seed = _integer("seed", raw.get("seed", 0), 0)
    steps = _steps(raw["steps"], Path(path).parent)
    backtest = None if raw.get("backtest") is None else _backtest(raw["backtest"], steps, method)
    return Study(Path(path), steps, method, bootstrap, seed, backtest)


def load_study(path: str | Path) -> Study:
    """Load and validate the study file `path` (its `get_study()`)."""
    path = Path(path).absolute()
    raw = call_python_file(path, "get_study", kind="study")
    try:
        return parse_study(raw, path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
