"""Small shared builders for tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import ml_collections
from flax import nnx

from lm.config import default_config


def tiny_model_config(**overrides) -> ml_collections.ConfigDict:
    """A model config small enough for exact-equality tests on CPU."""
    m = default_config().model
    m.update(dict(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                  d_ff=48, max_seq_len=64))
    m.update(overrides)
    return m


def single_segment(batch: int, length: int):
    positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    return positions, jnp.ones((batch, length), jnp.int32)


@nnx.jit
def forward(model, tokens, positions, segments):
    """The model's logits, jitted (eager module calls are slow on CPU)."""
    return model(tokens, positions, segments)


def forward1(model, tokens):
    """Logits of unpacked rows (one segment each)."""
    return forward(model, tokens, *single_segment(*tokens.shape))


def make_model(m: ml_collections.ConfigDict, seed: int = 0):
    """A Decoder initialised under one jit (eager init compiles every parameter's RNG)."""
    from lm.train.state import build_model
    graphdef, params = build_model(m, seed)
    return nnx.merge(graphdef, params)


def random_tokens(shape, vocab: int, seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, shape), jnp.int32)


def random_normal(shape, seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def write_small_stdlib_corpus(out, max_bytes: int = 400_000, max_file: int = 12_000):
    """Real text for training tests: small standard-library modules written as .py files."""

    from lm.data.corpus import stdlib_corpus

    size = 0
    for doc in stdlib_corpus()[0]:
        if size > max_bytes:
            break
        if len(doc.text) > max_file:
            continue
        path = Path(out) / doc.id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc.text)
        size += len(doc.text)
    return Path(out)


STDLIB_MODULES = ("argparse", "textwrap", "json/decoder", "json/encoder", "csv", "shlex", "fnmatch",
                  "glob", "bisect", "heapq", "colorsys", "keyword", "string", "copy")


def stdlib_texts() -> list[str]:
    """Real text: a few standard-library modules' source."""
    root = Path(json.__file__).parent.parent
    return [(root / f"{name}.py").read_text() for name in STDLIB_MODULES]


def assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    """Two lists of loader batches are equal: same length, same keys, same arrays."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])


def write_csv(path: Path, columns: dict) -> Path:
    """A CSV of `columns` (name -> values), header first."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    return path


def write_rows(path: Path, columns, rows) -> Path:
    """A CSV with header `columns` and one line per dict in `rows` (a sweep's results.csv)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_fit(capsys, *argv) -> tuple[dict, str]:
    """The JSON report `lm fit argv` printed, and its stderr."""
    from lm.cli import main
    main(["fit", *map(str, argv)])
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def lm_sweep(*argv: str) -> tuple[int, str]:
    """Run `lm sweep ...` in-process; (exit status, stdout)."""
    import argparse
    import contextlib
    import io

    from lm.sweep.cli import register

    parser = argparse.ArgumentParser(prog="lm")
    register(parser.add_subparsers(dest="command", required=True))
    overrides = [a for a in argv if a.startswith("--config.")]
    args = parser.parse_args(["sweep", *[a for a in argv if not a.startswith("--config.")]])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            args.run(args, overrides)
        except SystemExit as exit:
            return exit.code, out.getvalue()
    return 0, out.getvalue()
