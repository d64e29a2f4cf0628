"""MinHash dedup throughput of lm.data.dedup, and of datatrove on the same input in the same run.

    python benchmarks/dedup_throughput.py [--copies 976] [--shards 4] [--json OUT]
        [--datatrove-python /tmp/dt-venv/bin/python]

Input: every non-heading paragraph of WikiText-2 valid and test (../shared/data/en; 4,024
paragraphs) plus ``--copies`` near-duplicates of randomly chosen paragraphs (each word
replaced with probability 0.02), written once as JSONL. Both libraries run with
FineWeb's settings (word 5-grams, 112 hashes = 14 bands x 8 rows, no verification) in
one process; docs/s (cpu) is documents per CPU second of the stage, i.e. per core.

lm stages: read JSONL + ``MinHasher.signature`` + ``write_signatures`` (``--shards``
files); ``cluster_near_duplicates``; apply (``load_drops`` per shard and filtering);
and, for reference, exact dedup (``exact_key``, ``write_exact_keys``, ``find_exact_duplicates``).
datatrove stages (LocalPipelineExecutor, workers=1): MinhashDedupSignature,
MinhashDedupBuckets (14 tasks), MinhashDedupCluster, MinhashDedupFilter; the signature
stage also runs on the first 100 documents alone, to subtract its start-up (loading the
spaCy word tokenizer) and give a marginal rate. datatrove runs in its own virtualenv
(``--datatrove-python``; datatrove 0.10.1 there also needs regex, orjson, spacy,
tokenizers and xxhash<4) and is skipped when that is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lm.data.dedup import (MinHasher, cluster_near_duplicates, exact_key, find_exact_duplicates, load_drops,
                          write_exact_keys, write_signatures)

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = [REPO.parent / "shared" / "data" / "en" / f"wikitext2_{s}.tokens.txt" for s in ("valid", "test")]

_DATATROVE = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                      MinhashDedupSignature)
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

data, work = sys.argv[1], sys.argv[2]
config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
stages = {
    "signature_first_100": ([JsonlReader(data, limit=100), MinhashDedupSignature(f"{work}/sigs100", config=config)], 1),
    "signature": ([JsonlReader(data), MinhashDedupSignature(f"{work}/sigs", config=config)], 1),
    "buckets": ([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)], config.num_buckets),
    "cluster": ([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove_ids", config=config)], 1),
    "filter": ([JsonlReader(data), MinhashDedupFilter(f"{work}/remove_ids",
                exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                JsonlWriter(f"{work}/out", compression=None)], 1),
}
out = {}
for name, (pipeline, tasks) in stages.items():
    wall, cpu = time.perf_counter(), time.process_time()
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{work}/logs/{name}").run()
    out[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
removed = [json.loads(l)["id"] for p in __import__("pathlib").Path(f"{work}/removed").rglob("*.jsonl")
           for l in p.read_text().splitlines()]
print("RESULT " + json.dumps({"stages": out, "dropped_ids": removed}))
"""


def build_corpus(copies: int, seed: int = 0) -> list[dict[str, str]]:
    """WikiText-2 paragraphs plus ``copies`` near-duplicates (2% of words replaced)."""
    for path in WIKITEXT:
        if not path.exists():
            sys.exit(f"{path} is absent: this benchmark reads the shared WikiText-2 files")
    paragraphs = [line.strip() for path in WIKITEXT for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.strip().startswith("=")]
    rng = np.random.default_rng(seed)
    vocab = sorted({w for p in paragraphs for w in p.split()})
    docs = [{"id": f"wiki:{i}", "text": p} for i, p in enumerate(paragraphs)]
    for k, i in enumerate(rng.choice(len(paragraphs), size=copies, replace=False)):
        words = [vocab[rng.integers(len(vocab))] if rng.random() < 0.02 else w for w in paragraphs[i].split()]
        docs.append({"id": f"copy:{k}:of:{i}", "text": " ".join(words)})
    order = rng.permutation(len(docs))
    return [docs[i] for i in order]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def run_lm(jsonl: Path, work: Path, shards: int) -> dict:
    """Time lm's three phases on ``jsonl``; returns per-stage times and the drop count."""
    hasher = MinHasher(num_perm=112, shingle="word", ngram=5, seed=1)

    def sign() -> list[Path]:
        docs = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        paths = []
        for k in range(shards):
            part = docs[k::shards]
            path = work / f"shard-{k}.sig.npz"
            write_signatures(path, f"shard-{k}", [d["id"] for d in part],
                             np.stack([hasher.signature(d["text"]) for d in part]), hasher)
            paths.append(path)
        return paths

    paths, sign_t = timed(sign)
    stats, cluster_t = timed(lambda: cluster_near_duplicates(paths, work / "drops.npz", bands=14, rows=8))

    def apply() -> int:
        docs = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        kept = 0
        for k in range(shards):
            drops = load_drops(work / "drops.npz", f"shard-{k}")
            kept += sum(d["id"] not in drops for d in docs[k::shards])
        return kept

    kept, apply_t = timed(apply)

    def exact() -> int:
        docs = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        paths = [work / f"shard-{k}.keys.npz" for k in range(shards)]
        for k, path in enumerate(paths):
            write_exact_keys(path, f"shard-{k}", [d["id"] for d in docs[k::shards]],
                             [exact_key(d["text"]) for d in docs[k::shards]])
        return find_exact_duplicates(paths, work / "exact_drops.npz").dropped

    exact_dropped, exact_t = timed(exact)
    dropped = [i for k in range(shards) for i in load_drops(work / "drops.npz", f"shard-{k}")]
    return {"signature": sign_t, "cluster": cluster_t, "apply": apply_t, "exact": exact_t,
            "exact_dropped": exact_dropped, "dropped_ids": dropped,
            "candidate_pairs": stats.candidate_pairs, "kept": kept}


def unplanted(dropped_ids: list[str], docs: list[dict[str, str]]) -> int:
    """Dropped documents that are neither a planted copy nor the original of one."""
    originals = {d["id"].split(":of:")[1] for d in docs if d["id"].startswith("copy:")}
    return sum(not i.startswith("copy:") and i.split(":")[1] not in originals for i in dropped_ids)


def run_datatrove(python: Path, jsonl: Path, work: Path) -> dict | None:
    """Time datatrove's four MinHash stages in its own interpreter; None if unavailable."""
    if not python.exists():
        print(f"datatrove skipped: {python} not found (python -m venv /tmp/dt-venv && "
              "/tmp/dt-venv/bin/pip install datatrove regex xxhash tokenizers)")
        return None
    proc = subprocess.run([str(python), "-c", _DATATROVE, str(jsonl.parent), str(work)],
                          capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(f"datatrove failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    return {**result["stages"], "dropped_ids": result["dropped_ids"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=976)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--datatrove-python", type=Path, default=Path("/tmp/dt-venv/bin/python"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    docs = build_corpus(args.copies)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jsonl = tmp / "input" / "docs.jsonl"
        jsonl.parent.mkdir()
        jsonl.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        (tmp / "lm").mkdir()
        rows = {"docs": len(docs), "planted_copies": args.copies, "lm": run_lm(jsonl, tmp / "lm", args.shards),
                "datatrove": run_datatrove(args.datatrove_python, jsonl, tmp / "datatrove")}

    n = rows["docs"]
    print(f"{n} documents ({args.copies} planted near-duplicates), one process")
    print(f"{'library':<10} {'stage':<20} {'wall s':>8} {'cpu s':>8} {'docs/s (cpu)':>13}")
    for lib in ("lm", "datatrove"):
        if rows[lib] is None:
            continue
        for stage, t in rows[lib].items():
            if isinstance(t, dict):
                docs_in = 100 if stage == "signature_first_100" else n
                print(f"{lib:<10} {stage:<20} {t['wall_s']:8.2f} {t['cpu_s']:8.2f} {docs_in / t['cpu_s']:13.0f}")
        dropped = rows[lib]["dropped_ids"]
        if lib == "lm":
            print(f"lm         exact dedup dropped {rows[lib]['exact_dropped']}")
        print(f"{lib:<10} MinHash dropped {len(dropped)}, of which {unplanted(dropped, docs)} are "
              "neither planted copies nor their originals")
    if rows["datatrove"] is not None:
        t, t100 = rows["datatrove"]["signature"], rows["datatrove"]["signature_first_100"]
        print(f"datatrove signature, marginal rate after its start-up (100-doc run subtracted): "
              f"{(n - 100) / (t['cpu_s'] - t100['cpu_s']):.0f} docs/s (cpu)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
