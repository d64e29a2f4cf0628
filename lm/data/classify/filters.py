"""Pipeline filters that drop documents by a trained classifier's score.

* `QualityFilter` keeps documents that look like a reference corpus: by a
  score threshold, or by GPT-3's Pareto rule (Brown et al. 2020, appendix A:
  keep a document when ``np.random.pareto(alpha) > 1 - score``, alpha = 9),
  which keeps mostly high scores but some low ones too. The Pareto draw comes
  from a keyed hash of the seed and the text, so reruns, processes and workers
  agree: the keep probability of a document with score s is (2 - s) ** -alpha.
* `ToxicityFilter` drops documents whose toxicity probability reaches a threshold.

Both load the file named by `model` (recipes: ``"model": "path/to/model.bin"``;
``model_path`` is its old name, still accepted): a model written by
`LinearClassifier.save` (.npz), or a supervised fastText model (.bin / .ftz:
DCLM's quality classifier, one trained by `train_classifier(backend="fasttext")`
or ``lm data train-classifier``, ...) scoring the probability of its
`label` (default "1", i.e. ``__label__1``, what lm's trainer writes; DCLM's is
"hq"). With `languages` set, a filter judges only documents of those languages
and lets the others pass (a model trained on English says nothing about
Chinese); it then needs the language-id step before it.

`judge(text, lang)` returns (score, reason): the pipeline stores the score in
the record's ``meta["scores"][<step name>]`` (None: the language was not
judged), and `ScoreFilter` ("score_filter") drops documents by a stored score
without scoring them again.
"""

from __future__ import annotations

from pathlib import Path

from lm.data.classify.fasttext_model import FastTextModel, is_fasttext_path
from lm.data.classify.model import LinearClassifier
from lm.data.classify.model_file import chosen_model
from lm.data.classify.train import text_unit

DEFAULT_LABEL = "1"


def load_classifier(model_path: str | Path, label: str | None = None) -> LinearClassifier | FastTextModel:
    """A fastText model (.bin / .ftz) scoring `label` (default "1"), or lm's .npz classifier (no label)."""
    if is_fasttext_path(model_path):
        return FastTextModel(model_path, DEFAULT_LABEL if label is None else label)
    if label is not None:
        raise ValueError(f"label={label!r} applies to fastText models (.bin / .ftz); {model_path} is lm's own "
                         "classifier (.npz), which always scores its label 1: drop the label argument")
    return LinearClassifier.load(model_path)


class _ClassifierFilter:
    """Shared loading and language gating; subclasses define `name` and `_judge`."""

    name = ""

    def __init__(self, model_path: str, languages: list[str] | None, label: str | None = None):
        self.model_path = model_path
        self.model = load_classifier(model_path, label)
        self.languages = None if languages is None else list(languages)

    def __call__(self, text: str, lang: str | None) -> str | None:
        """None to keep `text`, or the reason ("<name>.<rule>") to drop it."""
        return self.judge(text, lang)[1]

    def judge(self, text: str, lang: str | None) -> tuple[float | None, str | None]:
        """(the score, or None for a language this filter does not judge; the drop reason or None)."""
        if self.languages is not None:
            if lang is None:
                raise ValueError(
                    f"{self.name} filter with languages={self.languages} got a document with no language; "
                    "run the language-id step before it, or drop the languages argument")
            if lang not in self.languages:
                return None, None
        score = self.model.score(text)
        return score, self._judge(text, score)

    def _judge(self, text: str, score: float) -> str | None:
        raise NotImplementedError


class QualityFilter(_ClassifierFilter):
    """Keep documents by quality score: `score >= threshold`, or GPT-3's Pareto rule with `pareto_alpha`.

    Give exactly one of `threshold` (in [0, 1]) and `pareto_alpha` (> 0; GPT-3 used 9).
    `model` names the classifier file (`model_path` is its old name).
    """

    name = "quality_classifier"

    def __init__(self, model: str | Path | None = None, threshold: float | None = None,
                 pareto_alpha: float | None = None, seed: int = 0, languages: list[str] | None = None,
                 label: str | None = None, model_path: str | Path | None = None):
        model_file = chosen_model(model, model_path, required=True)
        if (threshold is None) == (pareto_alpha is None):
            raise ValueError(
                f"give exactly one of threshold (got {threshold}) and pareto_alpha (got {pareto_alpha}), "
                "e.g. threshold=0.5, or pareto_alpha=9 for GPT-3's rule")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"threshold={threshold}: must be in [0, 1]")
        if pareto_alpha is not None and not pareto_alpha > 0:
            raise ValueError(f"pareto_alpha={pareto_alpha}: must be > 0 (GPT-3 used 9)")
        super().__init__(model_file, languages, label)
        self.threshold = threshold
        self.pareto_alpha = pareto_alpha
        self.seed = seed

    def pareto_draw(self, text: str) -> float:
        """The Pareto (Lomax, as numpy's) draw for `text`: u ** (-1/alpha) - 1 with u uniform in (0, 1]."""
        u = 1.0 - text_unit(text, f"pareto:{self.seed}")
        return u ** (-1.0 / self.pareto_alpha) - 1.0

    def _judge(self, text: str, score: float) -> str | None:
        if self.threshold is not None:
            return None if score >= self.threshold else f"{self.name}.low_score"
        return None if self.pareto_draw(text) > 1.0 - score else f"{self.name}.pareto"


class ToxicityFilter(_ClassifierFilter):
    """Drop documents whose toxicity probability is >= `threshold`; `model` names the classifier file
    (`model_path` is its old name)."""

    name = "toxicity"

    def __init__(self, model: str | Path | None = None, threshold: float = 0.5, languages: list[str] | None = None,
                 label: str | None = None, model_path: str | Path | None = None):
        model_file = chosen_model(model, model_path, required=True)
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold={threshold}: must be in [0, 1]")
        super().__init__(model_file, languages, label)
        self.threshold = threshold

    def _judge(self, text: str, score: float) -> str | None:
        return f"{self.name}.score" if score >= self.threshold else None


class ScoreFilter:
    """Drop documents by a score an earlier step stored (``meta["scores"][score]``), without scoring again.

    Keeps a document when ``minimum <= score <= maximum``; one without that
    score (its language was not judged) is kept. Reasons: "score_filter.low",
    "score_filter.high". The recipe checks that step `score` runs before this one.
    """

    name = "score_filter"

    def __init__(self, score: str, minimum: float | None = None, maximum: float | None = None):
        if minimum is None and maximum is None:
            raise ValueError(f"score_filter on {score!r}: give minimum, maximum or both")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise ValueError(f"score_filter on {score!r}: minimum={minimum} is above maximum={maximum}")
        self.score, self.minimum, self.maximum = score, minimum, maximum

    def check_scores(self, scores: dict[str, float | None]) -> str | None:
        """The drop reason for a document whose stored scores are `scores`, or None to keep it."""
        value = scores.get(self.score)
        if value is None:
            return None
        if self.minimum is not None and value < self.minimum:
            return f"{self.name}.low"
        if self.maximum is not None and value > self.maximum:
            return f"{self.name}.high"
        return None

    def __call__(self, text: str, lang: str | None) -> str | None:
        raise ValueError(f"score_filter reads the score {self.score!r} stored by an earlier step; it runs only "
                         "inside the `lm data prepare` pipeline")
