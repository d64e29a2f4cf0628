"""Throughput of lm's heuristic filter steps, and of datatrove's equivalents on the same input in the same run.

    python benchmarks/filter_throughput.py [--passes 10] [--datatrove-python /tmp/dt-venv/bin/python]

Input: the English WikiText-2 valid and test files (../shared/data/en) split into
articles at the lines matching ``^ = [^=].* = $`` (122 articles), each line stripped
of its surrounding spaces (WikiText ends every line with " ", which would fail every
terminal-punctuation rule). Every step sees the same input documents, independently
(steps are not chained), with ``lang="en"``; each step runs over the articles
``--passes`` times (10 by default: 1,220 documents), after one untimed warm-up call
on a text outside the input (loading the language model, spaCy's tokenizer).

Measured: documents per CPU second (``time.process_time`` of this single process,
so per core) of each lm step (Normalize, LanguageFilter({"en": 0.65}), GopherQuality,
GopherRepetition, C4Lines then C4Quality, FineWebQuality, RedactPII) and of datatrove's
equivalents with their defaults (LanguageFilter(languages=["en"]), GopherQualityFilter,
GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter, PIIFormatter), run in
datatrove's own virtualenv (``--datatrove-python``) by a helper written to a temporary
file. "kept" is the share of documents a filter keeps; for a modifier (normalize, pii)
it is the share of documents it changed. A step datatrove lacks or cannot run (its
language filter needs fasttext and a downloaded model) is shown as n/a with the reason.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lm.data.filters import C4Lines, C4Quality, FineWebQuality, GopherQuality, GopherRepetition
from lm.data.langid import LanguageFilter
from lm.data.normalize import Normalize
from lm.data.pii import RedactPII

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = [REPO.parent / "shared" / "data" / "en" / f"wikitext2_{s}.tokens.txt" for s in ("valid", "test")]
ARTICLE = re.compile(r"^ = [^=].* = $")
WARMUP = "The warm-up text is not part of the input, and it has enough words to be a document. " * 20
STEPS = ("normalize", "langid", "gopher_quality", "gopher_repetition", "c4", "fineweb", "pii")

_DATATROVE = r"""
import json, sys, time
from datatrove.data import Document

docs = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
passes, warmup = int(sys.argv[2]), sys.argv[3]

def make(name):
    if name == "langid":
        from datatrove.pipeline.filters import LanguageFilter
        return "filter", LanguageFilter(languages=["en"])
    if name == "pii":
        from datatrove.pipeline.formatters import PIIFormatter
        return "format", PIIFormatter()
    from datatrove.pipeline import filters
    cls = {"gopher_quality": "GopherQualityFilter", "gopher_repetition": "GopherRepetitionFilter",
           "c4": "C4QualityFilter", "fineweb": "FineWebQualityFilter"}.get(name)
    if cls is None:
        raise LookupError("no equivalent step")
    return "filter", getattr(filters, cls)()

def run(kind, step, text):
    if kind == "format":
        return step.format(text) != text
    out = step.filter(Document(text=text, id="0"))
    return out[0] if isinstance(out, tuple) else bool(out)

out = {}
for name in sys.argv[4].split(","):
    try:
        kind, step = make(name)
        run(kind, step, warmup)
    except Exception as e:
        out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:120]}
        continue
    kept = sum(run(kind, step, t) for t in docs)
    cpu = time.process_time()
    for _ in range(passes):
        for t in docs:
            run(kind, step, t)
    out[name] = {"cpu_s": time.process_time() - cpu, "kept": kept}
print("RESULT " + json.dumps(out))
"""


def load_articles() -> list[str]:
    """WikiText-2 valid + test, one document per article, lines stripped."""
    articles: list[list[str]] = []
    for path in WIKITEXT:
        for line in path.read_text(encoding="utf-8").splitlines():
            if ARTICLE.match(line):
                articles.append([])
            if articles:
                articles[-1].append(line.strip())
    return ["\n".join(lines).strip() for lines in articles]


def lm_steps() -> dict[str, object]:
    """Each step as ``text -> kept (filter) or changed (modifier)``."""
    normalize, pii = Normalize(), RedactPII()
    language = LanguageFilter({"en": 0.65})
    quality, repetition, fineweb = GopherQuality(), GopherRepetition(), FineWebQuality()
    c4_lines, c4_quality = C4Lines(), C4Quality()

    def c4(text: str) -> bool:
        return c4_quality(c4_lines(text, "en")[0], "en") is None

    return {"normalize": lambda t: bool(normalize(t)[1]), "langid": lambda t: language(t, "en") is None,
            "gopher_quality": lambda t: quality(t, "en") is None,
            "gopher_repetition": lambda t: repetition(t, "en") is None,
            "c4": c4, "fineweb": lambda t: fineweb(t, "en") is None, "pii": lambda t: bool(pii(t)[1])}


def run_lm(docs: list[str], passes: int) -> dict[str, dict]:
    out = {}
    for name, step in lm_steps().items():
        step(WARMUP)
        kept = sum(step(t) for t in docs)
        cpu = time.process_time()
        for _ in range(passes):
            for t in docs:
                step(t)
        out[name] = {"cpu_s": time.process_time() - cpu, "kept": kept}
    return out


def run_datatrove(python: Path, docs: list[str], passes: int) -> dict[str, dict]:
    """Time datatrove's steps in its own interpreter; every step an error if that fails."""
    if not python.exists():
        return {name: {"error": f"{python} not found"} for name in STEPS}
    with tempfile.TemporaryDirectory() as tmp:
        data, helper = Path(tmp) / "docs.jsonl", Path(tmp) / "dt_filters.py"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
        helper.write_text(_DATATROVE, encoding="utf-8")
        proc = subprocess.run([str(python), str(helper), str(data), str(passes), WARMUP, ",".join(STEPS)],
                              capture_output=True, text=True, cwd=tmp)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(f"datatrove failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return {name: {"error": "helper failed"} for name in STEPS}
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--datatrove-python", type=Path, default=Path("/tmp/dt-venv/bin/python"))
    args = parser.parse_args(argv)
    missing = [str(p) for p in WIKITEXT if not p.exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} absent; this benchmark reads the shared WikiText-2 files")
        return

    docs = load_articles()
    n = len(docs) * args.passes
    words = sum(len(t.split()) for t in docs)
    print(f"{len(docs)} WikiText-2 articles (mean {words // len(docs)} words, {sum(map(len, docs)) // len(docs)} "
          f"chars) x {args.passes} passes = {n} documents per step; one process, CPU time")
    results = {"lm": run_lm(docs, args.passes), "datatrove": run_datatrove(args.datatrove_python, docs, args.passes)}

    def cells(r: dict) -> tuple[str, str, float | None]:
        if "error" in r:
            return "n/a", "n/a", None
        rate = n / r["cpu_s"]
        return f"{rate:,.0f}", f"{100 * r['kept'] / len(docs):.1f}%", rate

    print(f"{'step':<18} {'lm docs/s/core':>15} {'datatrove docs/s/core':>22} {'ratio lm/dt':>12} "
          f"{'lm kept':>8} {'dt kept':>8}")
    notes = []
    for name in STEPS:
        lm_rate_s, lm_kept, lm_rate = cells(results["lm"][name])
        dt = results["datatrove"].get(name, {"error": "not run"})
        dt_rate_s, dt_kept, dt_rate = cells(dt)
        ratio = f"{lm_rate / dt_rate:.2f}" if lm_rate and dt_rate else "n/a"
        print(f"{name:<18} {lm_rate_s:>15} {dt_rate_s:>22} {ratio:>12} {lm_kept:>8} {dt_kept:>8}")
        if "error" in dt:
            notes.append(f"  datatrove {name}: {dt['error']}")
    print("kept: share of the articles a filter keeps; for normalize and pii, the share it changed")
    if notes:
        print("n/a:\n" + "\n".join(notes))


if __name__ == "__main__":
    sys.exit(main())
