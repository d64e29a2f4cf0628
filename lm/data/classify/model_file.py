"""The model-file argument of the classifier and language-id steps: `model`, or its old name `model_path`.

Recipes name the file as ``"model": "path/to/model.bin"``; ``model_path`` keeps
working as an alias. Giving both, or (where a model is required) neither, is an
`ArgumentError` naming the argument, which a recipe reports as its field.
"""

from __future__ import annotations

from pathlib import Path

from lm.data.checks import ArgumentError

ALIAS = "model_path"


def chosen_model(model: str | Path | None, model_path: str | Path | None, *, required: bool) -> str | None:
    """The model file named by `model` or its alias `model_path`, as a string (None if neither and not required)."""
    if model is not None and model_path is not None:
        raise ArgumentError(ALIAS, f"give model or model_path (its old name), not both: model={str(model)!r}, "
                                   f"model_path={str(model_path)!r}")
    chosen = model if model is not None else model_path
    if chosen is None and required:
        raise ArgumentError("model", "model is required: the classifier file (.npz from lm, or a fastText "
                                     ".bin / .ftz)")
    return None if chosen is None else str(chosen)
