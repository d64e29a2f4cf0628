"""Running a user's Python file (an experiment config, a sweep, a study, a recipe) and
returning what one of its functions returns, with one-line errors naming the file. The
file's directory is on the import path while it loads, so files can share a module
beside them (experiments/sweeps/fineweb_base.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from lm.errors import ConfigError


def call_python_file(path: str | Path, function: str, *, kind: str) -> Any:
    """Import the Python file `path` and return what its `function()` returns
    (experiment configs define `get_config`, sweeps `get_sweep`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"lm_{kind}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))  # the file may import modules beside it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ConfigError(f"{kind} file {path}:{err.lineno}: {err.msg}") from None
    except Exception as err:  # the file's own code failed: name it, not a traceback
        raise ConfigError(f"{kind} file {path} failed to load: {type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    if not hasattr(module, function):
        raise ConfigError(f"{kind} file {path} defines no {function}()")
    try:
        return getattr(module, function)()
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{kind} file {path}: {function}() raised {type(err).__name__}: {err}") from None
