"""lm checkpoints as a model of EleutherAI's lm-evaluation-harness (`pip install 'lm[eval]'`).

Importing this module registers the model name ``lm`` with lm-eval (lm-eval 0.4 finds
models only in its own registry, so the module must be imported first; `lm eval
--harness` does that):

    lm eval --workdir runs/quickstart --harness TASK [TASK ...] [--include-path DIR]

    import lm.tasks.harness, lm_eval
    lm_eval.simple_evaluate(model="lm", model_args="workdir=runs/quickstart", tasks=[...])

The three request types go through lm's own Scorer (lm/tasks/scoring.py), so on the
same prompts the numbers equal `lm eval --task`'s: `loglikelihood` (context, continuation)
pairs, `loglikelihood_rolling` (lm-eval's disjoint rolling windows of the model's max
length, the first conditioned on BOS) and `generate_until` (greedy; `until` stop
strings, `max_gen_toks`, default 256).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

try:
    from lm_eval import utils as lm_eval_utils
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("the lm-eval adapter needs lm-eval: pip install 'lm[eval]' (or pip install lm-eval)") from err

from lm.errors import ConfigError
from lm.tasks.scoring import Scorer

DEFAULT_MAX_GEN_TOKS = 256


@register_model("lm")
class LMHarnessModel(LM):
    """The newest checkpoint of an lm run, for lm-eval. `model_args`: workdir (required),
    batch_size (default the run's train.batch_size), max_length (default model.max_seq_len)."""

    def __init__(self, workdir: str | None = None, batch_size: int | str | None = None,
                 max_length: int | str | None = None, scorer: Scorer | None = None, **unused: Any):
        super().__init__()
        self.step = None
        if scorer is None:
            if not workdir:
                raise ConfigError("the lm model needs model_args workdir=DIR (a run's directory)")
            from lm.tasks.run import load_scorer
            from lm.train.state import read_run_config

            cfg = read_run_config(Path(workdir))
            size = int(batch_size) if str(batch_size or "").isdigit() else cfg.train.batch_size
            scorer, self.step = load_scorer(Path(workdir), cfg, batch_size=size,
                                            max_len=int(max_length) if max_length else None, command="lm_eval")
        self.scorer = scorer

    @property
    def tokenizer_name(self) -> str:
        return str(self.scorer.tokenizer.path)

    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self.scorer.encode_pair(context, continuation) for context, continuation in
                 (r.args for r in requests)]
        results = self.scorer.loglikelihood(pairs)
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        tokenizer, max_len = self.scorer.tokenizer, self.scorer.max_len
        windows, owners = [], []
        for n, (text,) in enumerate(r.args for r in requests):
            for window in lm_eval_utils.get_rolling_token_windows(
                    token_list=tokenizer.encode(text), prefix_token=tokenizer.bos_id, max_seq_len=max_len,
                    context_len=1):
                windows.append(lm_eval_utils.make_disjoint_window(window))
                owners.append(n)
        totals = [0.0] * len(requests)
        for owner, (ll, _) in zip(owners, self.scorer.loglikelihood(windows, desc="loglikelihood_rolling")):
            totals[owner] += ll
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        results = [""] * len(requests)
        for key, members in groups.items():
            kwargs = dict(json.loads(key))
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
            if kwargs.pop("do_sample", False) or float(kwargs.pop("temperature", 0.0) or 0.0) > 0:
                raise ConfigError("the lm model generates greedily only (do_sample false, temperature 0)")
            texts = self.scorer.generate([requests[i].args[0] for i in members], stop=until,
                                         max_new_tokens=min(max_new, self.scorer.max_len - 1))
            for i, text in zip(members, texts):
                results[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results


def run_harness(workdir: Path, tasks: Sequence[str], *, num_fewshot: int | None, limit: int | None,
                batch_size: int, max_len: int | None, include_path: str | None = None,
                log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` of the run in `workdir` on `tasks` (lm-eval task names, or
    names defined by YAML files under `include_path`), as plain JSON-ready data."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model = LMHarnessModel(workdir=str(workdir), batch_size=batch_size, max_length=max_len)
    manager = None  # lm-eval's own tasks (indexing them takes a while)
    if include_path:
        manager = TaskManager(include_path=include_path, include_defaults=False)
        if not set(tasks) <= set(manager.all_tasks):
            manager = TaskManager(include_path=include_path)
    out = simple_evaluate(model=model, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit,
                          task_manager=manager, log_samples=log_samples, bootstrap_iters=0)
    keep = {k: out[k] for k in ("results", "n-shot", "higher_is_better", "n-samples", "samples") if k in out}
    return json.loads(json.dumps({"workdir": str(workdir), "step": model.step, **keep},
                                 default=lm_eval_utils.handle_non_serializable))
