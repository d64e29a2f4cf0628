"""Before the passes: is the recipe's tokenizer vocabulary big enough for the corpus's characters?

SentencePiece needs a piece for every character among those making up
`CHARACTER_COVERAGE` (its default, which `lm.data.tokenizer` keeps) of the training
text, plus its meta pieces (unk, bos, eos, and 256 byte pieces with byte_fallback).
With fewer, training fails, which in `lm data prepare` comes after every pass.
`check_vocab_size` runs the recipe's per-document steps on a sample of the input (the
first records of tasks spread evenly over the plan, `SAMPLE_DOCS` in all) and counts
the characters of what survives the way sentencepiece counts them. It is an estimate
from a sample: the whole corpus may need more.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence

from lm.config import ConfigError
from lm.data.prepare.pipeline import TaskOptions, read_input, run_steps
from lm.data.prepare.plan import Task
from lm.data.prepare.provenance import Provenance
from lm.data.prepare.recipe import Recipe
from lm.data.prepare.steps import build_step, is_cross_shard

SAMPLE_DOCS = 2000
CHARACTER_COVERAGE = 0.9995
SPECIAL_PIECES = 3  # unk, bos, eos
BYTE_PIECES = 256


def required_characters(texts: Sequence[str], coverage: float = CHARACTER_COVERAGE) -> int:
    """How many distinct characters, most frequent first, it takes to cover `coverage` of the
    characters of `texts` (sentencepiece's required_chars)."""
    counts = Counter(itertools.chain.from_iterable(texts))
    total = sum(counts.values())
    covered = needed = 0
    for n in sorted(counts.values(), reverse=True):
        if covered >= coverage * total:
            break
        covered += n
        needed += 1
    return needed


def check_vocab_size(recipe: Recipe, tasks: Sequence[Task], options: TaskOptions) -> None:
    """ConfigError naming 'tokenizer.vocab_size' if the sample needs more pieces than it allows."""
    settings = recipe.settings["tokenizer"]
    if settings is None or not tasks:
        return
    texts = list(_sample(recipe, tasks, options))
    meta = SPECIAL_PIECES + (BYTE_PIECES if settings["byte_fallback"] else 0)
    chars = required_characters(texts)
    if chars + meta > settings["vocab_size"]:
        raise ConfigError(
            f"recipe field 'tokenizer.vocab_size': {settings['vocab_size']} is too small for this corpus's "
            f"characters: a sample of {len(texts)} documents (after the steps) needs {chars + meta} pieces "
            f"({chars} characters cover {CHARACTER_COVERAGE:.2%} of its text, plus {meta} for bytes and special "
            f"pieces); raise vocab_size to at least {chars + meta} (the whole corpus may need more)")


def _sample(recipe: Recipe, tasks: Sequence[Task], options: TaskOptions) -> Iterator[str]:
    """Texts of the sampled records that every per-document step keeps (dedup is left out)."""
    steps = [(spec.name, build_step(spec.name, spec.kwargs)) for spec in recipe.steps]
    steps = [(name, step) for name, step in steps if not is_cross_shard(step)]
    chosen = tasks if len(tasks) <= SAMPLE_DOCS else [tasks[i * len(tasks) // SAMPLE_DOCS]
                                                      for i in range(SAMPLE_DOCS)]
    per_task = math.ceil(SAMPLE_DOCS / len(chosen))
    for task in chosen:
        for record in itertools.islice(read_input(task, options, Provenance(0), []), per_task):
            if run_steps(steps, record, Provenance(0)) is None:
                yield record.text
