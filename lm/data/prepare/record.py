"""`Record`: one document flowing through the `lm data prepare` pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Record:
    """A document: `id` says where it came from ("<source>/<file>:<line>"), `source` is the
    recipe's source name, `lang` the ISO 639-1 code (None before language id), `meta` what
    the steps recorded about it (e.g. ``{"changes": {"pii": {"email": 2}}}``)."""

    id: str
    text: str
    source: str
    lang: str | None = None
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-able dict with the fields in a fixed order."""
        return {"id": self.id, "source": self.source, "lang": self.lang, "meta": self.meta, "text": self.text}

    @classmethod
    def from_json(cls, obj: dict) -> Record:
        """The inverse of `to_json`."""
        return cls(id=obj["id"], text=obj["text"], source=obj["source"], lang=obj["lang"], meta=obj["meta"])
