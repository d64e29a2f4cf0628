import gc
import json
import threading
import time

import numpy as np
import pytest

from lm.data.loader import train_iterator
from lm.data.prefetch import prefetch
from lm.data.shards import TokenShards, write_token_shards
from tests.helpers import assert_batches_equal


class Numbers:
    """A checkpointable iterator over 0..length-1 that raises at `fail_at` (if given)."""

    def __init__(self, length: int, fail_at: int | None = None):
        self.length, self.fail_at, self.next_index = length, fail_at, 0

    def __next__(self) -> int:
        if self.next_index == self.fail_at:
            raise ValueError(f"broken item {self.next_index}")
        if self.next_index == self.length:
            raise StopIteration
        self.next_index += 1
        return self.next_index - 1

    def get_state(self) -> dict:
        return {"next_index": self.next_index}

    def set_state(self, state: dict) -> None:
        self.next_index = state["next_index"]


def take(iterator, n: int) -> list:
    return [next(iterator) for _ in range(n)]


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the producer thread"
        time.sleep(0.005)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lm-prefetch"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> TokenShards:
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, 300, size=rng.integers(1, 90)).tolist() for _ in range(60)]
    out_dir = tmp_path_factory.mktemp("shards")
    write_token_shards(docs, out_dir, vocab_size=300, tokenizer_fingerprint="f", shard_max_tokens=400)
    return TokenShards(out_dir)


def loader(shards: TokenShards):
    return train_iterator(shards, seq_len=32, global_batch_size=4, seed=3, bos_id=1, eos_id=2,
                          process_index=0, process_count=1, num_epochs=3)


def test_same_items_in_the_same_order():
    with prefetch(Numbers(50), depth=3) as numbers:
        assert list(numbers) == list(range(50))
        with pytest.raises(StopIteration):
            next(numbers)


def test_state_is_the_consumers_not_the_producers():
    source = Numbers(100)
    numbers = prefetch(source, depth=3)
    assert numbers.get_state() == {"next_index": 0}
    assert take(numbers, 4) == [0, 1, 2, 3]
    # The producer fills the queue (3) and holds one more it cannot put yet.
    wait_until(lambda: source.get_state() == {"next_index": 8})
    assert numbers.get_state() == {"next_index": 4}
    numbers.close()


def test_resume_with_and_without_prefetch_matches_uninterrupted(shards):
    uninterrupted = take(loader(shards), 30)
    first = prefetch(loader(shards), depth=4)
    assert_batches_equal(take(first, 7), uninterrupted[:7])
    state = json.loads(json.dumps(first.get_state()))
    assert state == {"next_index": 7}
    first.close()

    plain = loader(shards)
    plain.set_state(state)
    assert_batches_equal(take(plain, 23), uninterrupted[7:])
    resumed = prefetch(loader(shards), depth=2)
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 23), uninterrupted[7:])
    # A state taken from the plain iterator resumes a prefetched one too, also mid-stream.
    resumed.set_state(plain.get_state() | {"next_index": 12})
    assert_batches_equal(take(resumed, 5), uninterrupted[12:17])
    assert resumed.get_state() == {"next_index": 17}
    resumed.close()


def test_set_state_rewinds_past_items_fetched_ahead():
    numbers = prefetch(Numbers(100), depth=5)
    assert take(numbers, 10) == list(range(10))
    numbers.set_state({"next_index": 2})
    assert numbers.get_state() == {"next_index": 2}
    assert take(numbers, 3) == [2, 3, 4]
    numbers.set_state({"next_index": 90})
    assert list(numbers) == list(range(90, 100))


def test_producer_exception_reaches_the_consumer_at_its_item():
    numbers = prefetch(Numbers(100, fail_at=3), depth=4)
    assert take(numbers, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="broken item 3"):
        next(numbers)
    assert numbers.get_state() == {"next_index": 3}
    with pytest.raises(ValueError, match="broken item 3"):
        next(numbers)
    assert not prefetch_threads()
    # Skipping the bad item recovers.
    numbers.set_state({"next_index": 4})
    assert take(numbers, 2) == [4, 5]
    numbers.close()


def test_close_stops_the_thread_and_next_continues_where_the_consumer_was():
    source = Numbers(100)
    numbers = prefetch(source, depth=3)
    assert take(numbers, 2) == [0, 1]
    wait_until(lambda: source.get_state()["next_index"] == 6)
    numbers.close()
    assert not prefetch_threads()
    assert source.get_state() == {"next_index": 2}  # rewound to the consumer's position
    assert take(numbers, 2) == [2, 3]
    with numbers:
        assert prefetch_threads()
    assert not prefetch_threads()


def test_a_dropped_iterator_stops_its_thread():
    numbers = prefetch(Numbers(1000), depth=2)
    next(numbers)
    assert len(prefetch_threads()) == 1
    del numbers
    gc.collect()
    wait_until(lambda: not prefetch_threads())


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match=r"prefetch depth=0 must be >= 1"):
        prefetch(Numbers(3), depth=0)
