"""`lm eval`: loss, perplexity and bits per byte of a run's newest checkpoint on text, or
its few-shot task metrics.

    lm eval --workdir runs/quickstart --heldout
    lm eval --workdir runs/x --data wiki.txt more.jsonl.zst [--text-field text]
            [--max-documents N] [--seq-len L] [--batch-size B] [--output FILE]
    lm eval --workdir runs/x --task kv_recall [more tasks] [--num-fewshot K] [--limit N]
    lm eval --workdir runs/x --harness TASK [TASK ...] [--include-path DIR]   (needs lm[eval])

Prints the results as JSON and writes them (atomically) to --output, by
default WORKDIR/eval/step<STEP>-<data>.json. See lm/evaluate.py for how
documents are scored and windowed, lm/tasks/ for the tasks (experiments/tasks/).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import ml_collections

from lm.config import ConfigError


def _eval(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.train.state import read_run_config
    from lm.data.build import heldout_documents
    from lm.evaluate import evaluate_run
    from lm.files import write_json_atomic

    if overrides:
        raise ConfigError("lm eval takes no --config.* overrides; the run's config is used")
    workdir = Path(args.workdir)
    cfg = read_run_config(workdir)
    if args.task or args.harness:
        return _eval_tasks(args, workdir, cfg)
    if args.num_fewshot is not None or args.limit is not None or args.include_path:
        raise ConfigError("--num-fewshot, --limit and --include-path apply to --task and --harness only")
    seq_len = args.seq_len or cfg.data.seq_len
    batch_size = args.batch_size or cfg.train.batch_size
    if not 0 < seq_len <= cfg.model.max_seq_len:
        raise ConfigError(f"--seq-len {seq_len} must be in [1, model.max_seq_len={cfg.model.max_seq_len}]")
    if batch_size <= 0 or (args.max_documents is not None and args.max_documents <= 0):
        raise ConfigError("--batch-size and --max-documents must be positive")
    data = cfg.data.copy_and_resolve_references()
    if args.text_field:
        data.text_field = args.text_field
    if args.hf_split:
        data.hf_split = args.hf_split
    if args.heldout:
        sources = [data.prepared_corpus] if data.prepared_corpus else list(data.sources)
        documents, described = heldout_documents(data), {"split": "heldout", "sources": sources}
    else:
        from lm.data.build import iter_corpus

        data.sources = tuple(args.data)
        documents, described = iter_corpus(data), {"split": "all", "sources": list(args.data)}
    described.update(text_field=data.text_field, max_documents=args.max_documents)
    results = evaluate_run(workdir, cfg, documents, seq_len=seq_len, batch_size=batch_size,
                           max_documents=args.max_documents)
    results["data"] = described
    output = Path(args.output) if args.output else _default_output(workdir, results["step"], described)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results, output)
    print(json.dumps({**results, "output": str(output)}))


def _eval_tasks(args: argparse.Namespace, workdir: Path, cfg: ml_collections.ConfigDict) -> None:
    """`lm eval --task` (lm's few-shot evaluator) or `lm eval --harness` (lm-eval's)."""
    from lm.files import write_json_atomic

    if (args.num_fewshot is not None and args.num_fewshot < 0) or (args.limit is not None and args.limit <= 0):
        raise ConfigError("--num-fewshot must be >= 0 and --limit positive")
    if args.max_documents or args.text_field or args.hf_split:
        raise ConfigError("--max-documents, --text-field and --hf-split apply to --data and --heldout only")
    max_len = args.seq_len or cfg.model.max_seq_len
    if not 1 < max_len <= cfg.model.max_seq_len:
        raise ConfigError(f"--seq-len {max_len} must be in [2, model.max_seq_len={cfg.model.max_seq_len}]")
    batch_size = args.batch_size or cfg.train.batch_size
    if batch_size <= 0:
        raise ConfigError("--batch-size must be positive")
    if args.harness:
        try:
            from lm.tasks.harness import run_harness
        except ImportError as err:  # lm-eval is an optional extra
            raise ConfigError(str(err)) from None

        results = run_harness(workdir, args.harness, num_fewshot=args.num_fewshot, limit=args.limit,
                              batch_size=batch_size, max_len=max_len, include_path=args.include_path)
        names, kind = args.harness, "harness"
    else:
        if args.include_path:
            raise ConfigError("--include-path applies to --harness only")
        from lm.tasks.run import evaluate_tasks

        results = evaluate_tasks(workdir, cfg, args.task, num_fewshot=args.num_fewshot, limit=args.limit,
                                 batch_size=batch_size, max_len=max_len)
        names, kind = list(results["tasks"]), "tasks"
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(Path(n).stem for n in names))[:80]
    shots = "" if args.num_fewshot is None else f"-{args.num_fewshot}shot"
    default = workdir / "eval" / f"step{results['step']}-{kind}-{name}{shots}.json"
    output = Path(args.output) if args.output else default
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results, output)
    summary = {k: v for k, v in results.items() if k not in ("tasks", "results", "samples", "configs")}
    for task_name, task in (results.get("tasks") or results.get("results") or {}).items():
        summary[task_name] = {k: v for k, v in task.items() if k != "samples"}
    print(json.dumps({**summary, "output": str(output)}))


def _default_output(workdir: Path, step: int, described: dict) -> Path:
    name = "heldout" if described["split"] == "heldout" else "+".join(
        Path(s.rstrip("/")).name or s for s in described["sources"])
    return workdir / "eval" / f"step{step}-{re.sub(r'[^A-Za-z0-9._+-]+', '_', name)[:80]}.json"


def register(commands: argparse._SubParsersAction) -> None:
    """Add `eval` to the `lm` command."""
    parser = commands.add_parser("eval", help="loss, perplexity and bits per byte of a run's model on text, "
                                 "or its few-shot task metrics")
    parser.add_argument("--workdir", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--data", nargs="+", metavar="SOURCE",
                       help="files, directories, 'stdlib' or hf:NAME[:CONFIG] (as data.sources)")
    which.add_argument("--heldout", action="store_true", help="the run's own held-out split")
    which.add_argument("--task", nargs="+", metavar="TASK",
                       help="few-shot tasks: names of files in experiments/tasks/ or paths to task files")
    which.add_argument("--harness", nargs="+", metavar="TASK",
                       help="lm-evaluation-harness tasks (pip install 'lm[eval]')")
    parser.add_argument("--text-field", help="JSONL/parquet text field (default: the run's data.text_field)")
    parser.add_argument("--hf-split", help="split of an hf: source (default: the run's data.hf_split)")
    parser.add_argument("--max-documents", type=int, help="score only the first N documents")
    parser.add_argument("--seq-len", type=int, help="window length (default: the run's data.seq_len; "
                        "--task/--harness: the longest sequence, default model.max_seq_len)")
    parser.add_argument("--batch-size", type=int, help="windows (sequences) per batch (default: train.batch_size)")
    parser.add_argument("--num-fewshot", type=int, help="--task/--harness: shots per prompt (default: the task's)")
    parser.add_argument("--limit", type=int, help="--task/--harness: evaluate only the first N examples")
    parser.add_argument("--include-path", help="--harness: a directory of extra lm-eval task YAML files")
    parser.add_argument("--output", help="results JSON (default: WORKDIR/eval/step<STEP>-<data>.json)")
    parser.set_defaults(run=_eval)
