"""Argument checks for the data steps, so a bad recipe fails when it is loaded, not mid-run.

`check_types` compares keyword arguments with the annotations of a class's
``__init__`` (int, float, bool, str, paths, None, unions, sequences and mappings of
those); the step constructors check ranges with `check_fraction` and
`check_at_least`. Both raise `ArgumentError`, which names the argument.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Any


class ArgumentError(ValueError):
    """A bad keyword argument of a step; `argument` is its name."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


def check_fraction(name: str, value: float, *, open_low: bool = False) -> None:
    """`value` must lie in [0, 1] (or (0, 1] with `open_low`)."""
    if not (0 < value <= 1 if open_low else 0 <= value <= 1):
        raise ArgumentError(name, f"{value!r} must be in {'(0' if open_low else '[0'}, 1]")


def check_at_least(name: str, value: float, low: float) -> None:
    """`value` must be >= `low` (NaN is not)."""
    if not value >= low:
        raise ArgumentError(name, f"{value!r} must be >= {low}")


def check_types(cls: type, kwargs: dict[str, Any]) -> None:
    """ArgumentError for the first keyword argument whose value does not match the annotation
    of `cls.__init__` (arguments without a usable annotation are not checked)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations naming what the module does not import at run time
        return
    for name, value in kwargs.items():
        hint = hints.get(name, inspect.Parameter.empty)
        if hint is not inspect.Parameter.empty and not _matches(value, hint):
            raise ArgumentError(name, f"{value!r} must be {_describe(hint)}, not {type(value).__name__}")


_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable,
              collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping)


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in args)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (Path, os.PathLike):
        return isinstance(value, (str, os.PathLike))
    if origin in _MAPPINGS or hint in _MAPPINGS:
        if not isinstance(value, collections.abc.Mapping):
            return False
        key, item = args if len(args) == 2 else (Any, Any)
        return all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
            return False
        item = args[0] if args and (len(args) == 1 or args[-1] is Ellipsis) else Any
        return all(_matches(v, item) for v in value)
    return True  # another class: its constructor checks it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in args)
    if hint is type(None) or hint is None:
        return "None"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if hint in names:
        return names[hint]
    if origin in _MAPPINGS or hint in _MAPPINGS:
        key, item = args if len(args) == 2 else (Any, Any)
        return f"a dict of {_short(key)} -> {_short(item)}"
    if origin in _SEQUENCES or hint in _SEQUENCES:
        return f"a list of {_plural(args[0] if args else Any)}"
    return getattr(hint, "__name__", str(hint))


def _short(hint: Any) -> str:
    return {int: "int", float: "number", str: "str", bool: "bool"}.get(hint, _describe(hint))


def _plural(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _SEQUENCES or hint in _SEQUENCES:
        return f"lists of {_plural(args[0] if args else Any)}"
    return {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}.get(hint, "values")
