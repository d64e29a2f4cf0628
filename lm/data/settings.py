"""Nested settings files (recipes, classifier files): a user's dict merged over the defaults,
with an unknown key named together with the nearest known one."""

from __future__ import annotations

import copy
import difflib
from typing import Callable, Collection

from lm.errors import ConfigError


def merge_settings(raw: dict, defaults: dict, *, kind: str, where: str = "",
                   nullable: Collection[str] = (), suggest: Collection[str] = (),
                   hint: Callable[[str, str], str | None] | None = None) -> dict:
    """`defaults` updated by `raw`, nested dicts merged key by key. ConfigError names the
    field as "`kind` field 'WHERE.KEY'": an unknown key (with the closest known one, else the
    closest of `suggest`, else the known fields; `hint(key, where)` may replace that hint), or
    a value that should be a dict. Keys in `nullable` may be None (a section switched off)."""
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        key = unknown[0]
        close = (difflib.get_close_matches(key, list(defaults), n=1)
                 or difflib.get_close_matches(key, list(suggest), n=1))
        text = (hint and hint(key, where)) or (
            f"; did you mean {close[0]!r}?" if close else f"; known fields: {sorted(defaults)}")
        raise ConfigError(f"{kind} field {where + key!r} is unknown{text}")
    merged = copy.deepcopy(defaults)
    for key, value in raw.items():
        if value is None and key in nullable:
            merged[key] = None
        elif isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{kind} field {where + key!r} must be a dict, got {type(value).__name__}")
            merged[key] = merge_settings(value, defaults[key], kind=kind, where=f"{where}{key}.",
                                         nullable=nullable, hint=hint)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
