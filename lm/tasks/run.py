"""Evaluating a run's model on few-shot tasks: `lm eval --workdir DIR --task TASK`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from lm.tasks import metrics
from lm.tasks.prompts import build_docs
from lm.tasks.schema import Task, load_task
from lm.tasks.scoring import Scorer
from lm.tasks.sources import load_examples


def load_scorer(workdir: Path, cfg: ml_collections.ConfigDict, *, batch_size: int, max_len: int | None = None,
                command: str = "lm eval") -> tuple[Scorer, int]:
    """A Scorer over the newest checkpoint of the run in `workdir`, and its step."""
    from lm.data.build import run_tokenizer_path
    from lm.data.tokenizer import Tokenizer
    from lm.train.state import restore_params

    graphdef, params, step = restore_params(workdir, cfg, command=command)
    tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, workdir))
    return Scorer(graphdef, params, tokenizer, max_len=max_len or cfg.model.max_seq_len,
                  batch_size=batch_size), step


def evaluate_task(scorer: Scorer, task: Task, *, num_fewshot: int | None = None,
                  limit: int | None = None) -> dict[str, Any]:
    """Metrics of `task` (means and standard errors) and every example's record."""
    k = task.num_fewshot if num_fewshot is None else num_fewshot
    docs = build_docs(task, load_examples(task), k, limit)
    if task.kind == "multiple_choice":
        pairs = [scorer.encode_pair(d.context, task.delimiter + c) for d in docs for c in d.choices]
        lls = iter(ll for ll, _ in scorer.loglikelihood(pairs, desc=task.name))
        samples = []
        for d in docs:
            doc_lls = [next(lls) for _ in d.choices]
            samples.append({"index": d.index, "context": d.context, "choices": list(d.choices), "gold": d.gold,
                            "loglikelihoods": doc_lls, **metrics.multiple_choice(doc_lls, d.choices, d.gold)})
    else:
        generated = scorer.generate([d.context for d in docs], stop=task.stop,
                                    max_new_tokens=task.max_new_tokens, desc=task.name)
        answer_lls = scorer.loglikelihood([scorer.encode_pair(d.context, task.delimiter + d.answer) for d in docs],
                                          desc=task.name)
        samples = []
        for d, text, (ll, _) in zip(docs, generated, answer_lls):
            extracted = metrics.extract(text, task.extract, task.strip)
            answer = d.answer.strip() if task.strip else d.answer
            encode = scorer.tokenizer.encode
            samples.append({"index": d.index, "context": d.context, "answer": answer, "generation": text,
                            "extracted": extracted,
                            **metrics.generation(extracted, answer, ll, encode(extracted), encode(answer))})
    names = list(metrics.HIGHER_IS_BETTER)
    summary = metrics.aggregate([{n: s[n] for n in names if n in s} for s in samples])
    return {"task": task.name, "file": str(task.path), "kind": task.kind, "num_fewshot": k, "limit": limit,
            "examples": len(samples), **summary, "samples": samples}


def evaluate_tasks(workdir: Path, cfg: ml_collections.ConfigDict, tasks: Sequence[str], *,
                   num_fewshot: int | None, limit: int | None, batch_size: int,
                   max_len: int | None = None) -> dict[str, Any]:
    """Evaluate the newest checkpoint of the run in `workdir` on each task (name or path)."""
    loaded = [load_task(t) for t in tasks]  # every file is checked before the model loads
    scorer, step = load_scorer(workdir, cfg, batch_size=batch_size, max_len=max_len)
    results = {}
    for task in loaded:
        start = time.perf_counter()
        results[task.name] = evaluate_task(scorer, task, num_fewshot=num_fewshot, limit=limit)
        results[task.name]["seconds"] = round(time.perf_counter() - start, 2)
    return {"workdir": str(workdir), "step": step, "max_len": scorer.max_len, "batch_size": batch_size,
            "tasks": results}
