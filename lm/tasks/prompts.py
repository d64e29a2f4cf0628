"""Few-shot prompts: the seeded shots, the rendered context and the answer of each example.

    context = separator.join([description] + shots + [prompt])
    shot    = prompt + delimiter + answer           (of an example of the few-shot pool)

A multiple-choice continuation is ``delimiter + choice``; a generation is conditioned on
the context alone and compared with the answer. Document i's shots are drawn with
``random.Random(fewshot_seed * 1_000_003 + i)`` from the pool, so they do not depend on
`--limit` or on the order of evaluation.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from lm.tasks.schema import Task, TaskError


@dataclasses.dataclass(frozen=True)
class Doc:
    """One evaluated example, rendered."""

    index: int
    context: str
    answer: str  # the target text (generate) or the correct choice
    choices: tuple[str, ...] = ()
    gold: int = -1  # index of the correct choice


def _field(task: Task, example: dict[str, Any], name: str, where: str, number: int) -> Any:
    if name not in example:
        raise TaskError(f"{task.path}: field {where} names {name!r}, which example {number} lacks "
                        f"(it has {', '.join(map(str, example))})")
    return example[name]


def render_prompt(task: Task, example: dict[str, Any], number: int) -> str:
    """The task's prompt template filled with the example's fields."""
    try:
        return task.prompt.format(**example)
    except KeyError as err:
        raise TaskError(f"{task.path}: field prompt uses {{{err.args[0]}}}, which example {number} lacks "
                        f"(it has {', '.join(map(str, example))})") from None
    except (IndexError, ValueError) as err:
        raise TaskError(f"{task.path}: field prompt is not a valid template ({err}); write literal "
                        "braces as {{ and }}") from None


def choices_and_gold(task: Task, example: dict[str, Any], number: int) -> tuple[tuple[str, ...], int]:
    """A multiple-choice example's choices and the index of the correct one."""
    choices = task.choices if isinstance(task.choices, list) else _field(task, example, task.choices, "choices",
                                                                         number)
    if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
        raise TaskError(f"{task.path}: field choices: example {number} has {choices!r}, not a list of strings")
    raw = _field(task, example, task.answer, "answer", number)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)
    if isinstance(raw, str) and raw in choices:
        raw = choices.index(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw < len(choices):
        raise TaskError(f"{task.path}: field answer: example {number} has {raw!r}, neither a choice nor an "
                        f"index below {len(choices)}")
    return tuple(choices), raw


def render(task: Task, example: dict[str, Any], number: int) -> tuple[str, str, tuple[str, ...], int]:
    """(prompt, answer text, choices, gold) of one example."""
    prompt = render_prompt(task, example, number)
    if task.kind == "multiple_choice":
        choices, gold = choices_and_gold(task, example, number)
        return prompt, choices[gold], choices, gold
    return prompt, str(_field(task, example, task.answer, "answer", number)), (), -1


def build_docs(task: Task, examples: list[dict[str, Any]], num_fewshot: int,
               limit: int | None = None) -> list[Doc]:
    """The evaluated examples (those after the few-shot pool, at most `limit`) with their contexts."""
    if num_fewshot > task.fewshot_pool:
        raise TaskError(f"--num-fewshot {num_fewshot} exceeds the few-shot pool of {task.path} "
                        f"(fewshot.pool = {task.fewshot_pool})")
    pool = [render(task, ex, n) for n, ex in enumerate(examples[:task.fewshot_pool])]
    shots = [prompt + task.delimiter + answer for prompt, answer, _, _ in pool]
    evaluated = examples[task.fewshot_pool:]
    docs = []
    for i, example in enumerate(evaluated[:limit]):
        prompt, answer, choices, gold = render(task, example, task.fewshot_pool + i)
        chosen = random.Random(task.fewshot_seed * 1_000_003 + i).sample(range(len(shots)), num_fewshot)
        parts = ([task.description] if task.description else []) + [shots[j] for j in chosen] + [prompt]
        docs.append(Doc(index=i, context=task.separator.join(parts), answer=answer, choices=choices, gold=gold))
    return docs
