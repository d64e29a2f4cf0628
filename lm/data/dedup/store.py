"""Files that carry dedup state between phases: per-shard files and the drop list.

A *shard file* (``.npz``, written atomically) holds one shard's document ids and one
array row per document (exact keys, MinHash signatures). Its ``header`` is JSON:
``{"format_version", "kind", "shard", "params"}``. Ids are stored as one UTF-8 blob
plus offsets, so memory follows the id bytes, not the longest id.

The *drop list* (``.npz``, written atomically) names every dropped document: its
shard and id, its cluster id and the shard and id of the document kept for that
cluster. A cluster's id is the global index of its kept document when the shards
are read in shard-name order (the position of that document in the concatenation of
all shards). ``load_drops(path, shard)`` gives one shard's dropped ids for the apply
phase.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lm.files import atomic_write

FORMAT_VERSION = 1
_DROPS_KIND = "drops"


@dataclasses.dataclass(frozen=True)
class DedupStats:
    """What a global dedup pass found: documents read, shards, candidate pairs
    considered (0 for exact dedup), clusters of two or more documents, documents dropped."""

    docs: int
    shards: int
    candidate_pairs: int
    clusters: int
    dropped: int


class DroppedDoc(NamedTuple):
    """Why a document is dropped: its cluster and the document kept in its place."""

    cluster: int
    kept_shard: str
    kept_id: str


@dataclasses.dataclass(frozen=True)
class ShardFile:
    """One shard file read back: shard name, ids (blob + offsets), params and row arrays."""

    path: Path
    shard: str
    params: dict[str, Any]
    id_blob: np.ndarray
    id_offsets: np.ndarray
    arrays: dict[str, np.ndarray]

    @property
    def num_docs(self) -> int:
        return len(self.id_offsets) - 1

    def doc_id(self, i: int) -> str:
        """The id of the shard's ``i``-th document."""
        return self.id_blob[self.id_offsets[i]:self.id_offsets[i + 1]].tobytes().decode("utf-8")


def _encode_ids(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [str(i).encode("utf-8") for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def write_npz(path: Path, kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and a JSON header (``header`` plus format version and ``kind``) to
    ``path`` (.npz) atomically."""
    header = {"format_version": FORMAT_VERSION, "kind": kind, **header}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, header=np.array(json.dumps(header)), **arrays)


def read_npz(path: Path, kind: str, fields: Sequence[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays named in ``fields`` of a ``kind`` file from ``write_npz``;
    a missing file, another kind or version, or a missing field is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {kind} file; run the phase that writes it first")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e}); write it again") from e
    with npz:
        if "header" not in npz.files:
            raise ValueError(f"{path}: not a dedup file (no 'header' entry); expected a {kind} file")
        header = json.loads(str(npz["header"]))
        if header.get("kind") != kind or header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: is a {header.get('kind')!r} file, format "
                             f"{header.get('format_version')}; expected {kind!r}, format {FORMAT_VERSION}")
        missing = [f for f in fields if f not in npz.files]
        if missing:
            raise ValueError(f"{path}: {kind} file lacks field {missing[0]!r}; write it again")
        return header, {f: npz[f] for f in fields}


def write_shard_file(path: Path, kind: str, shard: str, ids: Sequence[str],
                     rows: dict[str, np.ndarray], params: dict[str, Any]) -> None:
    """Write one shard's ids and per-document ``rows`` arrays to ``path`` atomically."""
    seen: set[str] = set()
    for doc_id in ids:
        if doc_id in seen:
            raise ValueError(f"{kind} for shard {shard!r}: document id {doc_id!r} appears twice; "
                             "ids must be unique within a shard so drops can name them")
        seen.add(doc_id)
    for name, array in rows.items():
        if len(array) != len(ids):
            raise ValueError(f"{kind} for shard {shard!r}: {len(ids)} ids but {len(array)} rows of "
                             f"{name!r}; give one row per document")
    blob, offsets = _encode_ids(ids)
    write_npz(path, kind, {"shard": shard, "params": params}, {"id_blob": blob, "id_offsets": offsets, **rows})


def read_shard_file(path: Path, kind: str, fields: Sequence[str]) -> ShardFile:
    """Read a shard file of ``kind`` with the row arrays named in ``fields``."""
    header, arrays = read_npz(path, kind, ["id_blob", "id_offsets", *fields])
    blob, offsets = arrays.pop("id_blob"), arrays.pop("id_offsets")
    return ShardFile(Path(path), header["shard"], header["params"], blob, offsets, arrays)


def shard_order(paths: Sequence[Path], kind: str) -> list[tuple[str, Path, dict[str, Any]]]:
    """(shard, path, params) of each file sorted by shard name, so results never depend on
    the order the files are given. Rejects two files of one shard and mixed params."""
    if not paths:
        raise ValueError(f"no {kind} files given; pass the file of every shard")
    entries = []
    for path in paths:
        header, _ = read_npz(path, kind, [])
        entries.append((header["shard"], Path(path), header["params"]))
    entries.sort(key=lambda e: e[0])
    for (a, pa, qa), (b, pb, qb) in zip(entries, entries[1:]):
        if a == b:
            raise ValueError(f"{pa} and {pb} both hold shard {a!r}; give each shard once")
    for shard, path, params in entries[1:]:
        if params != entries[0][2]:
            raise ValueError(f"{path} (shard {shard!r}) was written with {params}, but "
                             f"{entries[0][1]} with {entries[0][2]}; compute every shard with one config")
    return entries


def read_shard_files(paths: Sequence[Path], kind: str, fields: Sequence[str]) -> list[ShardFile]:
    """All shard files of ``kind``, in shard-name order (see ``shard_order``)."""
    return [read_shard_file(path, kind, fields) for _, path, _ in shard_order(paths, kind)]


def write_drops(path: Path, shard_files: Sequence[ShardFile], roots: np.ndarray,
                candidate_pairs: int) -> DedupStats:
    """Write the drop list: document ``g`` (global index over ``shard_files`` in order) is
    dropped when ``roots[g] != g``, for the kept document ``roots[g]``. Returns the stats."""
    shards = [s.shard for s in shard_files]
    starts = np.zeros(len(shard_files) + 1, dtype=np.int64)
    np.cumsum([s.num_docs for s in shard_files], out=starts[1:])
    dropped = np.flatnonzero(roots != np.arange(len(roots)))

    def locate(g: np.ndarray) -> tuple[np.ndarray, list[str]]:
        shard_index = np.searchsorted(starts, g, side="right") - 1
        names = [shard_files[s].doc_id(int(i - starts[s])) for s, i in zip(shard_index, g)]
        return shard_index.astype(np.int32), names

    shard_index, drop_ids = locate(dropped)
    kept_shard, kept_ids = locate(roots[dropped])
    stats = DedupStats(docs=len(roots), shards=len(shards), candidate_pairs=int(candidate_pairs),
                       clusters=len(np.unique(roots[dropped])), dropped=len(dropped))
    drop_blob, drop_offsets = _encode_ids(drop_ids)
    kept_blob, kept_offsets = _encode_ids(kept_ids)
    header = {"shards": shards, "stats": dataclasses.asdict(stats)}
    write_npz(path, _DROPS_KIND, header, {"shard_index": shard_index, "id_blob": drop_blob, "id_offsets": drop_offsets,
                         "cluster": roots[dropped].astype(np.int64), "kept_shard_index": kept_shard,
                         "kept_blob": kept_blob, "kept_offsets": kept_offsets})
    return stats


def load_drops(path: Path, shard: str) -> dict[str, DroppedDoc]:
    """The documents of ``shard`` that the drop list at ``path`` drops, by id."""
    fields = ["shard_index", "id_blob", "id_offsets", "cluster", "kept_shard_index", "kept_blob",
              "kept_offsets"]
    header, a = read_npz(path, _DROPS_KIND, fields)
    shards = header["shards"]
    if shard not in shards:
        raise ValueError(f"{path}: shard {shard!r} was not part of this dedup pass (its shards: "
                         f"{', '.join(map(repr, shards))}); pass a shard name the pass was given")
    out = {}
    for j in np.flatnonzero(a["shard_index"] == shards.index(shard)):
        doc_id = a["id_blob"][a["id_offsets"][j]:a["id_offsets"][j + 1]].tobytes().decode("utf-8")
        kept_id = a["kept_blob"][a["kept_offsets"][j]:a["kept_offsets"][j + 1]].tobytes().decode("utf-8")
        out[doc_id] = DroppedDoc(int(a["cluster"][j]), shards[a["kept_shard_index"][j]], kept_id)
    return out
