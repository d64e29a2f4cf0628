"""Language identification (`LanguageId`) and the filter keeping chosen languages (`LanguageFilter`).

The model is py3langid's (>= 0.4, a maintained fork of langid.py, Lui &
Baldwin 2012; BSD-3-Clause): a naive Bayes classifier over byte n-grams for
139 languages plus "zxx" (no linguistic content), whose weights ship inside
the PyPI wheel, so nothing is downloaded at run time. Codes are ISO 639-1
where one exists ("en", "zh", "ja"), ISO 639-3 otherwise (Wu Chinese is
"wuu", Cantonese "yue"). Its probabilities are normalised (a softmax whose
temperature grows with the square root of the text length), so the
confidence is in [0, 1] and comparable across document lengths.

How the pipeline uses it: ``lang, confidence = LanguageId()(text)``; store
``lang`` on the record (and the confidence in its metadata), then either
call ``LanguageFilter(keep).check(lang, confidence)``, which costs nothing,
or use `LanguageFilter` as an ordinary filter, ``filter(text, lang)``,
which identifies the text again to learn the confidence.

The model is read on first use (about a second), once per process, and
shared read-only by every identifier there; it is not pickled with the
object (it is 70 MB in memory), so shipping an identifier to worker
processes is cheap.

A fastText language-id model can replace py3langid: ``LanguageId(model=
"lid.176.bin")`` (recipe: ``{"step": "langid", "model": ...}``; ``model_path`` is
the argument's old name, still accepted), any
supervised .bin / .ftz whose labels are ``__label__<code>``. The code is the
label without its prefix and the confidence the model's probability; with
`langs`, the most probable allowed label wins, its probability renormalised
over the allowed ones (as py3langid does). Needs ``lm[fasttext]``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lm.data.classify.fasttext_model import LABEL_PREFIX, FastTextModel
from lm.data.classify.model_file import chosen_model

NO_LANGUAGE = "zxx"
"""The model's code for "no linguistic content"; text without a letter gets it with confidence 1.0."""


class LanguageId:
    """Identify the language of a text: ``LanguageId()(text) -> (code, confidence)``.

    `langs` restricts the answer to a set of codes (the model's 140 labels
    otherwise); a document in another language is then given
    the closest allowed one, usually with a low confidence. `model` (old
    name `model_path`) names a fastText language-id model to use instead of py3langid's.
    """

    name = "langid"

    def __init__(self, langs: Iterable[str] | None = None, model: str | None = None, model_path: str | None = None):
        self.langs = sorted(set(langs)) if langs is not None else None
        self.model_path = model_path = chosen_model(model, model_path, required=False)
        self._identifier: Any = None
        self.fasttext = None if model_path is None else FastTextModel(Path(model_path))
        if self.fasttext is not None:
            codes = [label.removeprefix(LABEL_PREFIX) for label in self.fasttext.labels]
            unknown = sorted(set(self.langs or ()) - set(codes))
            if unknown:
                raise ValueError(f"LanguageId: {model_path} has no label for {unknown}; its codes: "
                                 f"{', '.join(sorted(codes))}")
            self._allowed = None if self.langs is None else [LABEL_PREFIX + code for code in self.langs]
        elif self.langs is not None:
            self._load()  # fails now, not in a worker, on an unknown code

    def __call__(self, text: str) -> tuple[str, float]:
        """Return (language code, confidence in [0, 1]); ("zxx", 1.0) for text without a letter."""
        if not any(ch.isalpha() for ch in text):
            return NO_LANGUAGE, 1.0
        if self.fasttext is not None:
            label, confidence = self.fasttext.top(text, self._allowed)
            return label.removeprefix(LABEL_PREFIX), confidence
        lang, confidence = self._load().classify(text)
        return lang, min(1.0, max(0.0, float(confidence)))

    @property
    def labels(self) -> list[str]:
        """The language codes this identifier can answer."""
        if self.fasttext is not None:
            return sorted(label.removeprefix(LABEL_PREFIX) for label in self.fasttext.labels)
        return sorted(self._load().labels)

    def _load(self) -> Any:
        if self._identifier is None:
            identifier = copy.copy(_shared_model())  # restricting replaces, never mutates, arrays
            if self.langs is not None:
                unknown = sorted(set(self.langs) - set(identifier.labels))
                if unknown:
                    raise ValueError(f"LanguageId: unknown language code(s) {unknown}; "
                                     f"known codes: {', '.join(sorted(identifier.labels))}")
                identifier.set_languages(self.langs)
            self._identifier = identifier
        return self._identifier

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_identifier": None}


@functools.cache
def _shared_model() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter:
    """Filter: keep documents in the languages of `keep` identified with enough confidence.

    `keep` maps a language code to its minimum confidence, e.g.
    ``{"en": 0.65, "zh": 0.5}``. A document in another language is dropped
    with reason ``"language.<code>"``; one in a kept language whose
    confidence is below that language's minimum with
    ``"language.low_confidence"``. `langs` and `model` (old name
    `model_path`) are `LanguageId`'s.
    """

    name = "language"

    def __init__(self, keep: Mapping[str, float], langs: Iterable[str] | None = None, model: str | None = None,
                 model_path: str | None = None):
        if not keep:
            raise ValueError("LanguageFilter: keep is empty; give at least one language, "
                             "e.g. {'en': 0.65}")
        for lang, minimum in keep.items():
            if not 0.0 <= minimum <= 1.0:
                raise ValueError(f"LanguageFilter: keep[{lang!r}] = {minimum} is outside [0, 1]")
        self.keep = dict(keep)
        self.identify = LanguageId(langs, model, model_path)

    def check(self, lang: str, confidence: float) -> str | None:
        """The drop reason for an identified document, or None to keep it."""
        if lang not in self.keep:
            return f"{self.name}.{lang}"
        if confidence < self.keep[lang]:
            return f"{self.name}.low_confidence"
        return None

    def __call__(self, text: str, lang: str | None = None) -> str | None:
        """Identify `text` and return the drop reason, or None to keep it.

        The language is identified again because the filter needs the
        confidence, which `lang` does not carry; the result is the one
        `LanguageId` gave when both use the same `langs`.
        """
        return self.check(*self.identify(text))
