"""Data-side throughput: the loader against the train step, lm's tokenizer against sentencepiece.

    python benchmarks/data_throughput.py [--preset small] [--workdir DIR] [--steps 3]
        [--rounds 3] [--json OUT]

The preset's data (tokenizer and token shards of its `data.sources`, by default the
stdlib corpus) is built once with `lm.data.build.build_run_data` into
``--workdir`` (default ``$LM_CACHE_DIR/data_throughput/<preset>``) and reused. Then:

1. loader: tokens/s of the batches the trainer reads (`RunData.train_batches`, i.e.
   `train_iterator` over the train shards) at the preset's batch size and seq_len
   (rounds timed before and after the train step), the train step's tokens/s
   (`time_train_step` from train_step.py), and their ratio; also how long ``next()``
   blocks when the consumer is busy between batches, plain and through
   `lm.data.prefetch.prefetch`;
2. tokenizer training: `train_tokenizer` against `SentencePieceTrainer.train` called
   with the options and seed lm recorded in tokenizer.json and the same sentences;
3. encoding: `Tokenizer.encode_batch` against `SentencePieceProcessor.encode` on the
   held-out split's documents.

The two sides of each comparison run alternately (A B B A ...), so drift in machine
load falls on both; each side is timed in wall seconds and in the process's CPU
seconds (all threads), which other processes' load hardly moves. Every figure is the
median over ``--rounds`` (encoding, which is quick, runs `ENCODE_PAIRS_PER_ROUND` pairs
per round).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import sentencepiece as spm

from lm.config import load_config
from lm.data.build import RunData, build_run_data, is_heldout, iter_corpus
from lm.data.prefetch import prefetch
from lm.data.tokenizer import MODEL_FILE, OPTIONS_FILE, Tokenizer, _chunks, train_tokenizer
from train_step import preset_path, time_train_step, write_json  # benchmarks/ is on the path when run as a script

T = TypeVar("T")
TARGET_RATIO = 20.0
LOADER_BATCHES = 400  # batches per timed loader round
WAIT_BATCHES = 50  # batches per consumer-wait round
WAIT_GAP_S = 0.02  # the consumer's busy time between batches (sleeping, as a step does, frees the GIL)
PREFETCH_DEPTH = 2
ENCODE_PAIRS_PER_ROUND = 5  # one encoding pass of the held-out split takes well under a second


def default_workdir(preset: str) -> Path:
    cache = os.environ.get("LM_CACHE_DIR")
    return (Path(cache) if cache else Path.home() / ".cache" / "lm") / "data_throughput" / preset


def alternate(first: Callable[[], T], second: Callable[[], T], rounds: int) -> tuple[list[T], list[T]]:
    """The results of `rounds` calls each of `first` and `second`, in the order A B B A A B ..."""
    a, b = [], []
    for r in range(rounds):
        for run, results in ((first, a), (second, b)) if r % 2 == 0 else ((second, b), (first, a)):
            results.append(run())
    return a, b


def clocked(work: Callable[[], object]) -> Callable[[], tuple[float, float]]:
    """`work` timed: returns (wall seconds, process CPU seconds over all threads)."""
    def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        return time.perf_counter() - wall, time.process_time() - cpu
    return run


def medians(times: list[tuple[float, float]]) -> dict[str, Any]:
    """Median wall and CPU seconds of (wall, cpu) runs, and every run's."""
    return {"wall_s": statistics.median(w for w, _ in times), "cpu_s": statistics.median(c for _, c in times),
            "rounds_wall_s": [w for w, _ in times], "rounds_cpu_s": [c for _, c in times]}


def loader_round(iterator, batches: int, tokens_per_batch: int) -> float:
    """Tokens/s of `batches` consecutive ``next()`` calls."""
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * tokens_per_batch / (time.perf_counter() - start)


def consumer_wait(iterator, batches: int) -> float:
    """Median seconds ``next()`` blocks when the consumer is busy `WAIT_GAP_S` between calls."""
    waits = []
    for _ in range(batches):
        time.sleep(WAIT_GAP_S)
        start = time.perf_counter()
        next(iterator)
        waits.append(time.perf_counter() - start)
    return statistics.median(waits)


def bench_loader(cfg, data: RunData, steps: int, rounds: int, label: str) -> dict:
    """Loader tokens/s around the train step's tokens/s, and consumer waits with/without prefetch."""
    batch_size, seq_len = cfg.train.batch_size, cfg.data.seq_len

    def make():  # the iterator the trainer reads
        return data.train_batches(batch_size, cfg.train.steps)

    iterator = make()
    next(iterator)  # the epoch plan and the thread pool are made on the first batch
    tokens_per_batch = batch_size * seq_len
    loader = [loader_round(iterator, LOADER_BATCHES, tokens_per_batch) for _ in range((rounds + 1) // 2)]
    print(f"[bench] train step of {label}: 1 warmup + {steps} timed steps", file=sys.stderr, flush=True)
    step = time_train_step(cfg, steps, warmup=1, label=label)
    loader += [loader_round(iterator, LOADER_BATCHES, tokens_per_batch) for _ in range(rounds // 2)]

    plain, prefetched = make(), prefetch(make(), PREFETCH_DEPTH)
    for it in (plain, prefetched):
        next(it)
    with prefetched:
        wait_plain, wait_prefetch = alternate(lambda: consumer_wait(plain, WAIT_BATCHES),
                                              lambda: consumer_wait(prefetched, WAIT_BATCHES), rounds)
    loader_tps = statistics.median(loader)
    return {
        "batch_size": batch_size, "seq_len": seq_len, "loader_batches_per_round": LOADER_BATCHES,
        "loader_tokens_per_s": loader_tps, "loader_rounds_tokens_per_s": loader,
        "train_step_tokens_per_s": step["tokens_per_s"], "train_step_median_s": step["median_step_s"],
        "train_step_steps": steps, "ratio": loader_tps / step["tokens_per_s"],
        "wait_gap_s": WAIT_GAP_S, "prefetch_depth": PREFETCH_DEPTH,
        "wait_plain_s": statistics.median(wait_plain), "wait_prefetch_s": statistics.median(wait_prefetch),
    }


def bench_tokenizer_training(d, vocab_size: int, texts: list[str], rounds: int, scratch: Path) -> dict:
    """`train_tokenizer` against sentencepiece's trainer with lm's recorded options, same sentences."""
    start = time.process_time()
    sentences = list(_chunks(texts))  # exactly what train_tokenizer feeds the trainer
    chunk_cpu_s = time.process_time() - start
    models, recorded = [], {}

    def run_lm() -> None:
        out = scratch / f"lm-{len(models)}"
        train_tokenizer(texts, out, vocab_size=vocab_size, model_type=d.tokenizer_type,
                        byte_fallback=d.tokenizer_byte_fallback, split_digits=d.tokenizer_split_digits,
                        max_sentences=d.tokenizer_max_sentences, seed=d.seed)
        models.append((out / MODEL_FILE).read_bytes())
        recorded.update(json.loads((out / OPTIONS_FILE).read_text("utf-8")))

    def run_direct() -> None:
        model = io.BytesIO()
        spm.set_random_generator_seed(recorded["seed"])
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, minloglevel=2,
                                       **recorded["options"])
        models.append(model.getvalue())

    lm, direct = alternate(clocked(run_lm), clocked(run_direct), rounds)  # lm first: it records the options
    return {"vocab_size": vocab_size, "text_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "sentences": len(sentences), "chunk_cpu_s": chunk_cpu_s, "lm": medians(lm), "direct": medians(direct),
            "identical_models": len(set(models)) == 1}


def bench_encoding(tokenizer: Tokenizer, texts: list[str], rounds: int) -> dict:
    """`Tokenizer.encode_batch` against `SentencePieceProcessor.encode` on the same texts."""
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer.path))
    outputs = {}

    def run_lm() -> None:
        outputs["lm"] = tokenizer.encode_batch(texts)

    def run_direct() -> None:
        outputs["direct"] = processor.encode(texts)

    lm, direct = alternate(clocked(run_lm), clocked(run_direct), rounds * ENCODE_PAIRS_PER_ROUND)
    return {"docs": len(texts), "text_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "tokens": sum(len(ids) for ids in outputs["lm"]), "lm": medians(lm), "direct": medians(direct),
            "identical_ids": outputs["lm"] == outputs["direct"]}


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_report(result: dict[str, Any]) -> str:
    """The three tables of a `run` result."""
    lo, tr, en = result["loader"], result["tokenizer_training"], result["encoding"]
    verdict = "meets" if lo["ratio"] >= TARGET_RATIO else "MISSES"
    load = "load average {:.1f} before, {:.1f} after".format(*result["load_average"])
    lines = [f"preset {result['preset']}, {result['rounds']} rounds, {load}, data in {result['workdir']}", "",
             f"1. loader ({lo['batch_size']} x {lo['seq_len']} per batch, {lo['loader_batches_per_round']} "
             f"batches per round)"]
    lines += _table([
        ["", "tokens/s"],
        ["loader (RunData.train_batches)", f"{lo['loader_tokens_per_s']:,.0f}"],
        [f"train step (median of {lo['train_step_steps']}, {lo['train_step_median_s']:.3f} s)",
         f"{lo['train_step_tokens_per_s']:,.0f}"],
        ["loader / step", f"{lo['ratio']:,.0f}x ({verdict} the {TARGET_RATIO:.0f}x target)"],
    ])
    lines += [f"   next() blocks {1e6 * lo['wait_plain_s']:.0f} us plain, {1e6 * lo['wait_prefetch_s']:.0f} us "
              f"through prefetch(depth={lo['prefetch_depth']}) (median, consumer busy "
              f"{1e3 * lo['wait_gap_s']:.0f} ms between batches)", "",
              f"2. tokenizer training (vocab {tr['vocab_size']:,}, {tr['text_bytes'] / 1e6:.1f} MB, "
              f"{tr['sentences']:,} sentences)"]
    lines += _table([
        ["", "wall s", "CPU s"],
        ["lm train_tokenizer", f"{tr['lm']['wall_s']:.2f}", f"{tr['lm']['cpu_s']:.2f}"],
        ["SentencePieceTrainer.train", f"{tr['direct']['wall_s']:.2f}", f"{tr['direct']['cpu_s']:.2f}"],
        ["lm / direct", f"{tr['lm']['wall_s'] / tr['direct']['wall_s']:.2f}",
         f"{tr['lm']['cpu_s'] / tr['direct']['cpu_s']:.2f}"],
        ["lm's line chunking (once)", "", f"{tr['chunk_cpu_s']:.2f}"],
    ])
    lines.append(f"   identical models: {'yes' if tr['identical_models'] else 'NO'}")
    lines += ["", f"3. encoding ({en['docs']} held-out docs, {en['text_bytes'] / 1e6:.2f} MB, "
                  f"{en['tokens']:,} tokens)"]
    rows = [["", "wall MB/s", "wall tokens/s", "CPU MB/s"]]
    for side, name in (("lm", "Tokenizer.encode_batch"), ("direct", "SentencePieceProcessor.encode")):
        wall, cpu = en[side]["wall_s"], en[side]["cpu_s"]
        rows.append([name, f"{en['text_bytes'] / wall / 1e6:.2f}", f"{en['tokens'] / wall:,.0f}",
                     f"{en['text_bytes'] / cpu / 1e6:.2f}"])
    speed = en["direct"]["wall_s"] / en["lm"]["wall_s"]
    cpu_speed = en["direct"]["cpu_s"] / en["lm"]["cpu_s"]
    rows.append(["lm / direct speed", f"{speed:.2f}", f"{speed:.2f}", f"{cpu_speed:.2f}"])
    lines += _table(rows)
    lines.append(f"   identical ids: {'yes' if en['identical_ids'] else 'NO'}")
    return "\n".join(lines)


def run(preset: str, workdir: Path, steps: int, rounds: int) -> dict[str, Any]:
    """Build (or reuse) the preset's data in `workdir` and run the three benchmarks."""
    cfg = load_config(preset_path(preset), [])
    d = cfg.data
    print(f"[bench] data for {preset} in {workdir}", file=sys.stderr, flush=True)
    data = build_run_data(d, cfg.model.vocab_size, workdir)
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"preset": preset, "workdir": str(workdir), "rounds": rounds}
    result["loader"] = bench_loader(cfg, data, steps, rounds, preset)
    texts = {False: [], True: []}
    for doc in iter_corpus(d):
        texts[is_heldout(doc.text, d.heldout_fraction)].append(doc.text)
    print("[bench] tokenizer training", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="lm-bench-tok-") as scratch:
        result["tokenizer_training"] = bench_tokenizer_training(d, cfg.model.vocab_size, texts[False], rounds,
                                                                Path(scratch))
    print("[bench] encoding", file=sys.stderr, flush=True)
    result["encoding"] = bench_encoding(data.tokenizer, texts[True], rounds)
    result["load_average"] = [load_before, os.getloadavg()[0]]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="experiments/configs/<name>.py")
    parser.add_argument("--workdir", type=Path, help="where the preset's data is built once and reused")
    parser.add_argument("--steps", type=int, default=3, help="timed train steps (after 1 warmup)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each measurement")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds} must be >= 1")
    result = run(args.preset, args.workdir or default_workdir(args.preset), args.steps, args.rounds)
    print(format_report(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
