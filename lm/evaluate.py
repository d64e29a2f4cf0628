"""Loss, perplexity and bits per byte of a run's model on any text the data readers accept.

Each document is scored on its own: the stream ``[BOS] t1 .. tn`` predicts
``t1 .. tn EOS``, so n + 1 tokens are scored. A document with more than
`seq_len` predictions is cut into consecutive, non-overlapping windows of
`seq_len`; every window starts at position 0 with no context from the one
before (every token is scored exactly once; a sliding window would give long
documents somewhat lower loss at several times the cost). Windows fill fixed
[batch_size, seq_len] batches whose padding carries no loss, so the results
do not depend on the batch size, nor on seq_len for documents that fit.

    loss (nats per token) = total nats / tokens scored
    bits per byte         = total nats / (ln 2 * UTF-8 bytes of the scored text)

Bits per byte does not depend on the tokenizer, so models with different
vocabularies compare on it. The bytes are those of the text the scored tokens
decode to: the document itself when the tokenizer round-trips it (lm's own
tokenizers always do); a document it does not round-trip is counted in
`lossy_documents` and contributes the bytes of what it became. The nats of
the EOS predictions count too (EOS stands for the end of the text, which a
byte-level model would also have to predict).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Iterable

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from lm.train.state import restore_params
from lm.data.build import run_tokenizer_path
from lm.data.read import Document
from lm.data.tokenizer import Tokenizer
from lm.train.step import make_eval_step


@dataclasses.dataclass
class EvalTotals:
    """Sums over the scored documents."""

    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0
    documents: int = 0
    windows: int = 0
    lossy_documents: int = 0

    def metrics(self) -> dict[str, float]:
        """Mean loss (nats/token), perplexity and bits per byte."""
        loss = self.nats / max(self.tokens, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                "bits_per_byte": self.nats / (math.log(2) * max(self.bytes, 1))}


def document_windows(ids: list[int], *, bos_id: int, eos_id: int,
                     seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) windows of at most `seq_len` covering ``[BOS]+ids -> ids+[EOS]``."""
    inputs, targets = [bos_id] + ids, ids + [eos_id]
    return [(inputs[s:s + seq_len], targets[s:s + seq_len]) for s in range(0, len(targets), seq_len)]


def pack_rows(windows: list[tuple[list[int], list[int]]], *, batch_size: int,
              seq_len: int) -> dict[str, np.ndarray]:
    """One batch of windows, one per row from position 0; rows and columns beyond them are padding."""
    batch = {k: np.zeros((batch_size, seq_len), np.int32)
             for k in ("inputs", "targets", "positions", "segment_ids")}
    for row, (inputs, targets) in enumerate(windows):
        n = len(inputs)
        batch["inputs"][row, :n] = inputs
        batch["targets"][row, :n] = targets
        batch["positions"][row, :n] = np.arange(n)
        batch["segment_ids"][row, :n] = 1
    return batch


def score_documents(graphdef: nnx.GraphDef, params: Any, tokenizer: Tokenizer, texts: Iterable[str],
                    *, seq_len: int, batch_size: int) -> EvalTotals:
    """Score every text (see the module docstring) and return the sums."""
    eval_step = jax.jit(make_eval_step(graphdef))
    totals = EvalTotals()
    pending: list[tuple[list[int], list[int]]] = []

    def run(windows: list[tuple[list[int], list[int]]]) -> None:
        sums = jax.device_get(eval_step(params, pack_rows(windows, batch_size=batch_size, seq_len=seq_len)))
        totals.nats += float(sums["nll"])
        totals.tokens += int(sums["tokens"])
        totals.windows += len(windows)

    for text in texts:
        ids = tokenizer.encode(text)
        scored_text = tokenizer.decode(ids)
        totals.lossy_documents += scored_text != text
        totals.bytes += len(scored_text.encode("utf-8"))
        totals.documents += 1
        pending += document_windows(ids, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, seq_len=seq_len)
        while len(pending) >= batch_size:
            run(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        run(pending)
    return totals


def evaluate_run(workdir: Path, cfg: ml_collections.ConfigDict, documents: Iterable[Document], *,
                 seq_len: int, batch_size: int, max_documents: int | None = None) -> dict[str, Any]:
    """Score the newest checkpoint of the run in `workdir` (config `cfg`) on `documents`."""
    graphdef, params, step = restore_params(workdir, cfg)
    tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, workdir))
    docs = itertools.islice(documents, max_documents)
    texts = (doc.text for doc in tqdm(docs, desc="eval", unit="doc", disable=None, total=max_documents))
    totals = score_documents(graphdef, params, tokenizer, texts, seq_len=seq_len, batch_size=batch_size)
    return {"workdir": str(workdir), "step": step, "tokenizer": str(tokenizer.path),
            "seq_len": seq_len, "batch_size": batch_size, **dataclasses.asdict(totals),
            **totals.metrics()}
