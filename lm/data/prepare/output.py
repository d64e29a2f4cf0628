"""Record files of `lm data prepare`: zstd-compressed JSON lines, written atomically.

The clean output is ``clean/shard-00000.jsonl.zst ...`` (one `Record` per line:
id, source, lang, meta, text) plus ``clean/manifest.json`` (written last, so a
directory without it is unfinished), re-cut from the tasks' outputs in task order
into shards of ``output.docs_per_shard`` documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import zstandard

from lm.data.prepare.record import Record
from lm.data.read import DataError, jsonl_lines
from lm.files import atomic_write, write_json_atomic

MANIFEST = "manifest.json"
ZSTD_LEVEL = 3
_SHARD = re.compile(r"shard-\d{5}\.jsonl\.zst")


def write_jsonl_zst(path: Path, objects: Iterable[dict]) -> int:
    """Write `objects` as zstd-compressed JSON lines to `path` atomically; return how many."""
    count = 0
    with atomic_write(Path(path)) as f:
        with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(f, closefd=False) as z:
            for obj in objects:
                z.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
                count += 1
    return count


def read_jsonl_zst(path: Path) -> Iterator[dict]:
    """The objects of a file written by `write_jsonl_zst`."""
    for _, line in jsonl_lines(Path(path)):
        yield json.loads(line)


def write_clean_shards(task_outputs: Sequence[Path], clean_dir: Path, docs_per_shard: int) -> dict:
    """Concatenate the tasks' kept records in order into shards of `docs_per_shard` records;
    write the manifest last and return it. Stale shard files from an interrupted run go."""
    clean_dir = Path(clean_dir)
    clean_dir.mkdir(parents=True, exist_ok=True)
    records = (obj for path in task_outputs for obj in read_jsonl_zst(path))
    shards = []
    while True:
        batch = [obj for _, obj in zip(range(docs_per_shard), records)]
        if not batch and shards:
            break
        name = f"shard-{len(shards):05d}.jsonl.zst"
        shards.append({"file": name, "num_docs": write_jsonl_zst(clean_dir / name, batch)})
        if len(batch) < docs_per_shard:
            break
    names = {s["file"] for s in shards}
    for stale in clean_dir.iterdir():
        if _SHARD.fullmatch(stale.name) and stale.name not in names:
            stale.unlink()
    manifest = {"num_docs": sum(s["num_docs"] for s in shards), "shards": shards}
    write_json_atomic(manifest, clean_dir / MANIFEST)
    return manifest


def iter_clean(clean_dir: Path) -> Iterator[Record]:
    """The records of a finished clean directory, in order."""
    clean_dir = Path(clean_dir)
    if not (clean_dir / MANIFEST).is_file():
        raise DataError(f"{clean_dir} has no {MANIFEST}: the clean output is unfinished; rerun lm data prepare")
    for shard in json.loads((clean_dir / MANIFEST).read_text())["shards"]:
        for obj in read_jsonl_zst(clean_dir / shard["file"]):
            yield Record.from_json(obj)
