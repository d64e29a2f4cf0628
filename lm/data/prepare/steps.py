"""The step registry: recipe step names -> classes, imported lazily by module name.

Per-document steps follow the interfaces of issue 4: a *filter* returns None (keep)
or a reason string "<name>.<rule>" (drop); a *modifier* returns (new text, counts
of changes by kind); the *language identifier* (name "langid") is called with the
text alone and returns (language, confidence). A *classifier* filter also has
``judge(text, lang) -> (score or None, reason or None)``; the pipeline stores its score
in ``meta["scores"][name]``, where a *score filter* (``check_scores(scores)``) reads it. Filters and modifiers are told
apart by what they return. A *cross-shard* step (dedup) has the methods of
`lm.data.prepare.dedup_stage.CrossShardStep` and runs in two phases around a
barrier. A recipe may also name any class as "package.module:Class".
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lm.data.checks import ArgumentError, check_types

PER_DOCUMENT_STEPS = {
    "normalize": "lm.data.normalize:Normalize",
    "langid": "lm.data.langid:LanguageId",
    "language": "lm.data.langid:LanguageFilter",
    "gopher_quality": "lm.data.filters.gopher:GopherQuality",
    "gopher_repetition": "lm.data.filters.gopher:GopherRepetition",
    "c4_lines": "lm.data.filters.c4:C4Lines",
    "c4": "lm.data.filters.c4:C4Quality",
    "fineweb": "lm.data.filters.fineweb:FineWebQuality",
    "badwords": "lm.data.filters.badwords:BadWords",
    "pii": "lm.data.pii:RedactPII",
    "quality_classifier": "lm.data.classify.filters:QualityFilter",
    "toxicity": "lm.data.classify.filters:ToxicityFilter",
    "score_filter": "lm.data.classify.filters:ScoreFilter",
}
CROSS_SHARD_STEPS = {
    "exact_dedup": "lm.data.prepare.dedup_stage:ExactDedup",
    "minhash_dedup": "lm.data.prepare.dedup_stage:MinHashDedup",
    "line_dedup": "lm.data.prepare.dedup_stage:LineDedup",
}
LANGID = "langid"
LANGUAGE = "language"  # the language filter reuses the langid step's answer when one ran before it


class StepError(ValueError):
    """A step name or its arguments are bad; the message names it and lists the known steps.
    `argument` names the bad keyword argument when one is to blame."""

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


def known_steps() -> list[str]:
    return sorted({**PER_DOCUMENT_STEPS, **CROSS_SHARD_STEPS})


def step_class(name: str) -> type:
    """The class registered as `name` (or named "module:Class"), imported now."""
    target = PER_DOCUMENT_STEPS.get(name) or CROSS_SHARD_STEPS.get(name)
    if target is None and ":" not in name:
        raise StepError(f"unknown step {name!r}; known steps: {', '.join(known_steps())} (or 'package.module:Class')")
    module_name, _, class_name = (target or name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise StepError(f"step {name!r} needs module {module_name}, which cannot be imported ({e}); "
                        "install what it needs or remove the step") from e
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise StepError(f"step {name!r}: module {module_name} has no class {class_name}")
    return cls


def build_step(name: str, kwargs: dict[str, Any]) -> Any:
    """An instance of step `name` made with the recipe's keyword arguments, whose types are
    checked against the annotations of its class first (`lm.data.checks`)."""
    cls = step_class(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise StepError(f"step {name!r} does not take these arguments ({e}); "
                        f"its signature is {cls.__name__}{inspect.signature(cls)}") from e
    try:
        check_types(cls, kwargs)
        return cls(**kwargs)
    except ArgumentError as e:
        raise StepError(f"{e} (step {name!r})", e.argument) from e
    except (ValueError, TypeError, OSError) as e:
        raise StepError(f"step {name!r} rejected its arguments {kwargs}: {e}") from e


def is_cross_shard(step: Any) -> bool:
    """Whether `step` (a step class or instance) runs across shards (dedup), not per document."""
    return hasattr(step, "write_signatures")


def check_step(name: str, kwargs: dict[str, Any]) -> None:
    """Build the step once so a bad name or argument fails when the recipe is loaded."""
    step = build_step(name, kwargs)
    if not is_cross_shard(step) and not callable(step):
        raise StepError(f"step {name!r}: {type(step).__name__} is neither callable nor a cross-shard step")
