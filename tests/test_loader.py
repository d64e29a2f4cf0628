import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lm.data.loader import EVAL_SEED, FIELDS, PackedRows, eval_batches, rows_per_epoch, train_iterator
from lm.data.read import DataError, Document
from lm.data.shards import TokenShards, tokenize_to_shards, write_token_shards
from lm.data.tokenizer import train_tokenizer
from tests.helpers import assert_batches_equal

BOS, EOS, VOCAB = 1, 2, 300
SEQ_LEN = 32
SHAKESPEARE = Path(__file__).parents[1] / ".." / "shared" / "data" / "en" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def docs() -> list[list[int]]:
    rng = np.random.default_rng(0)
    # Ids from 3 up, so BOS and EOS only appear where the loader puts them.
    docs = [rng.integers(3, VOCAB, size=rng.integers(1, 90)).tolist() for _ in range(60)]
    docs[10] = []
    return docs


@pytest.fixture(scope="module")
def shards(docs, tmp_path_factory) -> TokenShards:
    out_dir = tmp_path_factory.mktemp("shards")
    write_token_shards(docs, out_dir, vocab_size=VOCAB, tokenizer_fingerprint="f", shard_max_tokens=400)
    return TokenShards(out_dir)


def packed(shards, seed, num_epochs=2) -> PackedRows:
    return PackedRows(shards, seq_len=SEQ_LEN, bos_id=BOS, eos_id=EOS, seed=seed, num_epochs=num_epochs)


def stacked(rows: list[dict]) -> dict[str, np.ndarray]:
    return {name: np.stack([r[name] for r in rows]) for name in FIELDS}


def epoch_rows(source: PackedRows, epoch: int) -> dict[str, np.ndarray]:
    r = source.rows_per_epoch
    return stacked([source[i] for i in range(epoch * r, (epoch + 1) * r)])


def make_iterator(shards, seed=0, global_batch_size=4, **kw):
    return train_iterator(
        shards, seq_len=SEQ_LEN, global_batch_size=global_batch_size, seed=seed, bos_id=BOS, eos_id=EOS, **kw
    )


def take(iterator, n) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def test_rows_per_epoch(shards, docs):
    total_pair_tokens = sum(len(d) + 1 for d in docs)
    assert rows_per_epoch(shards, SEQ_LEN) == math.ceil(total_pair_tokens / SEQ_LEN)
    assert len(packed(shards, seed=0, num_epochs=3)) == 3 * math.ceil(total_pair_tokens / SEQ_LEN)


@pytest.mark.parametrize("epoch", [0, 1])
def test_every_pair_token_once_per_epoch(shards, docs, epoch):
    rows = epoch_rows(packed(shards, seed=7), epoch)
    real = rows["segment_ids"] > 0
    assert Counter(rows["inputs"][real].tolist()) == Counter([BOS] * len(docs) + [t for d in docs for t in d])
    assert Counter(rows["targets"][real].tolist()) == Counter([t for d in docs for t in d] + [EOS] * len(docs))
    # Padding: exactly the leftover of the last stream row, all zeros, at the end of a single row.
    num_rows = rows["inputs"].shape[0]
    num_pad = num_rows * SEQ_LEN - sum(len(d) + 1 for d in docs)
    assert (~real).sum() == num_pad > 0
    padded_rows = np.flatnonzero((~real).any(axis=1))
    assert len(padded_rows) == 1
    assert real[padded_rows[0]].tolist() == [True] * (SEQ_LEN - num_pad) + [False] * num_pad
    for name in FIELDS:
        assert (rows[name][~real] == 0).all()


def test_epochs_are_shuffled_differently(shards):
    source = packed(shards, seed=7)
    first, second = epoch_rows(source, 0), epoch_rows(source, 1)
    assert not np.array_equal(first["inputs"], second["inputs"])


def test_unshuffled_rows_are_the_stream_cut_into_rows(shards, docs):
    rows = epoch_rows(packed(shards, seed=None, num_epochs=1), 0)
    real = rows["segment_ids"] > 0
    assert rows["inputs"][real].tolist() == [t for d in docs for t in [BOS, *d]]
    assert rows["targets"][real].tolist() == [t for d in docs for t in [*d, EOS]]


@pytest.mark.parametrize("seed", [None, 3])
def test_segments_and_positions_follow_document_boundaries(shards, seed):
    rows = epoch_rows(packed(shards, seed=seed), 1 if seed else 0)
    for inputs, targets, segment_ids, positions in zip(*(rows[name] for name in FIELDS), strict=True):
        length = int((segment_ids > 0).sum())
        segments = segment_ids[:length]
        # Segments are numbered 1, 2, 3... left to right with no gaps; padding only at the end.
        assert segments[0] == 1 and set(np.diff(segments).tolist()) <= {0, 1}
        assert (segment_ids[length:] == 0).all()
        for s in range(1, segments[-1] + 1):
            (columns,) = np.nonzero(segment_ids == s)
            start, end = columns[0], columns[-1] + 1
            assert positions[start:end].tolist() == list(range(end - start))
            # Next-token pairs within the segment.
            assert targets[start : end - 1].tolist() == inputs[start + 1 : end].tolist()
            # BOS only opens a document; a segment not at column 0 is a whole document's start.
            assert BOS not in inputs[start + 1 : end]
            assert start == 0 or inputs[start] == BOS
            # EOS only closes a document; a segment that is followed by more is its end.
            assert EOS not in targets[start : end - 1]
            assert end == SEQ_LEN or targets[end - 1] == EOS


def test_iterator_batches_shapes_and_determinism(shards):
    first = take(make_iterator(shards, seed=0, process_index=0, process_count=1), 6)
    assert set(first[0]) == set(FIELDS)
    assert all(b[name].shape == (4, SEQ_LEN) and b[name].dtype == np.int32 for b in first for name in FIELDS)
    assert_batches_equal(first, take(make_iterator(shards, seed=0, process_index=0, process_count=1), 6))
    other = take(make_iterator(shards, seed=1, process_index=0, process_count=1), 6)
    assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other, strict=True))


def continues_previous_row(rows: dict[str, np.ndarray]) -> np.ndarray:
    """For each row after the first: does it carry on the document the previous row was cut in?"""
    last_targets, next_inputs = rows["targets"][:-1, -1], rows["inputs"][1:, 0]
    return (last_targets != EOS) & (next_inputs == last_targets)


def test_rows_are_visited_in_shuffled_order(shards):
    in_order = epoch_rows(packed(shards, seed=None), 0)
    cut = in_order["targets"][:-1, -1] != EOS
    assert cut.sum() > 20
    assert continues_previous_row(in_order)[cut].all()
    shuffled = epoch_rows(packed(shards, seed=4), 0)
    assert continues_previous_row(shuffled).sum() <= 2


def test_resume_from_json_state(shards):
    uninterrupted = make_iterator(shards, seed=3, process_index=0, process_count=1)
    take(uninterrupted, 5)
    state = uninterrupted.get_state()
    assert state == {"next_index": 5}
    expected = take(uninterrupted, 20)  # crosses into the next epochs

    resumed = make_iterator(shards, seed=3, process_index=0, process_count=1)
    resumed.set_state(json.loads(json.dumps(state)))
    assert_batches_equal(take(resumed, 20), expected)


def test_two_hosts_split_each_global_batch(shards):
    single = take(make_iterator(shards, seed=2, process_index=0, process_count=1), 10)
    hosts = [take(make_iterator(shards, seed=2, process_index=h, process_count=2), 10) for h in (0, 1)]
    for b, batch in enumerate(single):
        for name in FIELDS:
            assert hosts[0][b][name].shape == (2, SEQ_LEN)
            # Row i of the global batch goes to host i % 2.
            np.testing.assert_array_equal(hosts[0][b][name], batch[name][0::2])
            np.testing.assert_array_equal(hosts[1][b][name], batch[name][1::2])


def test_iterator_ends_after_the_last_full_global_batch(shards):
    r = rows_per_epoch(shards, SEQ_LEN)
    counts = [
        sum(1 for _ in make_iterator(shards, global_batch_size=6, process_index=h, process_count=2, num_epochs=2))
        for h in (0, 1)
    ]
    assert counts == [2 * r // 6] * 2


def test_bad_arguments(shards):
    with pytest.raises(ValueError, match="global batch size 3 must be a positive multiple of process_count=2"):
        make_iterator(shards, global_batch_size=3, process_index=0, process_count=2)
    with pytest.raises(ValueError, match=r"process_index=2 is not in \[0, process_count=2\)"):
        make_iterator(shards, process_index=2, process_count=2)
    with pytest.raises(ValueError, match=r"bos_id=-1 is not a token id in \[0, 300\)"):
        PackedRows(shards, seq_len=SEQ_LEN, bos_id=-1, eos_id=EOS, seed=0, num_epochs=1)
    r = rows_per_epoch(shards, SEQ_LEN)
    with pytest.raises(DataError, match=rf"1 epochs of {r} rows do not fill one global batch of {r + 2}"):
        make_iterator(shards, global_batch_size=r + 2, process_index=0, process_count=1, num_epochs=1)


def eval_kw(shards, **kw):
    return dict(shards=shards, seq_len=SEQ_LEN, bos_id=BOS, eos_id=EOS, **kw)


def test_eval_batches_fixed_shuffle_and_deterministic(shards):
    batches = eval_batches(**eval_kw(shards, batch_size=4, num_batches=3, process_index=0, process_count=1))
    again = eval_batches(**eval_kw(shards, batch_size=4, num_batches=3, process_index=0, process_count=1))
    assert_batches_equal(batches, again)
    source = packed(shards, seed=EVAL_SEED, num_epochs=1)  # independent of the run's seed
    assert_batches_equal(batches, [stacked([source[i] for i in range(4 * b, 4 * b + 4)]) for b in range(3)])
    host1 = eval_batches(**eval_kw(shards, batch_size=4, num_batches=3, process_index=1, process_count=2))
    assert_batches_equal(host1, [{name: b[name][1::2] for name in FIELDS} for b in batches])


def test_eval_batches_all_rows_and_too_many(shards):
    r = rows_per_epoch(shards, SEQ_LEN)
    everything = eval_batches(**eval_kw(shards, batch_size=1, num_batches=r, process_index=0, process_count=1))
    assert len(everything) == r
    message = rf"held-out set has {r} rows of seq_len {SEQ_LEN}, but 2 batches of {r} need {2 * r}; "
    message += r"use num_batches <= 1 or more held-out data"
    with pytest.raises(DataError, match=message):
        eval_batches(**eval_kw(shards, batch_size=r, num_batches=2, process_index=0, process_count=1))


def test_end_to_end_on_real_text(tmp_path):
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} not present (shared data not checked out)")
    paragraphs = [p + "\n" for p in SHAKESPEARE.read_text("utf-8")[:200_000].split("\n\n")]
    tokenizer = train_tokenizer(paragraphs, tmp_path / "tok", vocab_size=512)
    documents = [Document(id=str(i), text=p) for i, p in enumerate(paragraphs)]
    tokenize_to_shards(documents, tokenizer, tmp_path / "shards", progress=False)
    shards = TokenShards(tmp_path / "shards", verify=True)
    batches = eval_batches(
        shards,
        seq_len=64,
        batch_size=8,
        num_batches=2,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        process_index=0,
        process_count=1,
    )
    # Every segment that starts with BOS decodes to the start of a paragraph (others continue one).
    starts = 0
    for batch in batches:
        for inputs, positions, segments in zip(batch["inputs"], batch["positions"], batch["segment_ids"]):
            for seg in set(segments[segments > 0].tolist()):
                where = segments == seg
                assert positions[where][0] == 0
                if inputs[where][0] == tokenizer.bos_id:
                    text = tokenizer.decode(inputs[where][1:].tolist())
                    assert any(p.startswith(text) for p in paragraphs)
                    starts += 1
    assert starts > 5
