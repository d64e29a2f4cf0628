"""Host-side prefetch: a background thread keeps a bounded queue of the next batches.

`prefetch(iterator, depth)` wraps any iterator with ``get_state()`` / ``set_state()``
(such as `lm.data.loader.train_iterator`'s) so that ``next()`` takes a batch that a
producer thread fetched while the consumer was busy (e.g. waiting on the train step).

Checkpoint semantics are those of the wrapped iterator, as if no thread existed:
``get_state()`` describes the next batch the *consumer* will receive, never how far
the producer has read ahead, so saving it and calling ``set_state`` on a fresh
(prefetched or plain) iterator resumes with exactly that batch. ``set_state`` drops
the batches fetched ahead and restarts the producer there. An exception raised by the
wrapped iterator is raised by the consumer's ``next()`` at the batch where it
happened (and again on later calls). The producer starts on the first ``next()``;
``close()`` (or leaving a ``with`` block) stops it and rewinds the wrapped iterator to
the consumer's position.
"""

from __future__ import annotations

import copy
import queue
import threading
from typing import Any, Generic, NoReturn, Protocol, TypeVar

T = TypeVar("T")
_POLL_S = 0.1  # how often a producer blocked on a full queue checks for a stop request


class CheckpointableIterator(Protocol[T]):
    def __next__(self) -> T: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


class _End:
    """Queue item: the wrapped iterator stopped (`error` None) or raised `error`."""

    def __init__(self, error: BaseException | None):
        self.error = error


class Prefetched(Generic[T]):
    """An iterator over `source`'s items, fetched `depth` ahead by a daemon thread."""

    def __init__(self, source: CheckpointableIterator[T], depth: int):
        if depth < 1:
            raise ValueError(f"prefetch depth={depth} must be >= 1 (batches fetched ahead)")
        self._source = source
        self._depth = depth
        self._state = source.get_state()  # the state before the next item the consumer gets
        self._end: _End | None = None
        self._queue: queue.Queue | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Prefetched[T]:
        return self

    def __next__(self) -> T:
        if self._end is not None:
            _finish(self._end)
        if self._thread is None:
            self._start()
        item, state = self._queue.get()
        if isinstance(item, _End):
            self._end = item
            self._thread.join()  # it returns right after putting the end
            self._thread = self._queue = self._stop = None
            _finish(item)
        self._state = state
        return item

    def get_state(self) -> Any:
        """The wrapped iterator's state just before the next item `next()` will return."""
        return copy.deepcopy(self._state)

    def set_state(self, state: Any) -> None:
        """Discard the items fetched ahead and continue from `state` (from `get_state`)."""
        self._stop_producer()
        self._source.set_state(state)
        self._state = copy.deepcopy(state)
        self._end = None

    def close(self) -> None:
        """Stop the producer thread and wait for it; a later `next()` restarts it at
        the item the consumer would have received next."""
        self._stop_producer()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)  # absent if __init__ raised
        if stop is not None:
            stop.set()

    def _start(self) -> None:
        self._queue = queue.Queue(maxsize=self._depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_produce, args=(self._source, self._queue, self._stop),
                                        name="lm-prefetch", daemon=True)
        self._thread.start()

    def _stop_producer(self) -> None:
        """Stop the producer, wait for it, forget what it fetched ahead and rewind the
        source to the consumer's position."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = self._queue = self._stop = None
        self._source.set_state(self._state)


def _finish(end: _End) -> NoReturn:
    if end.error is None:
        raise StopIteration
    raise end.error


def _produce(source: CheckpointableIterator, items: queue.Queue, stop: threading.Event) -> None:
    """Put (item, source state after it) pairs on `items` until the source ends or fails
    (then an `_End`) or `stop` is set. Holds no reference to the `Prefetched` wrapper, so
    a wrapper dropped without `close()` is collected and its `__del__` stops this thread."""
    while not stop.is_set():
        try:
            entry = (next(source), source.get_state())
        except StopIteration:
            entry = (_End(None), None)
        except BaseException as error:  # handed to the consumer, which raises it
            entry = (_End(error), None)
        while not stop.is_set():
            try:
                items.put(entry, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        if isinstance(entry[0], _End):
            return


def prefetch(iterator: CheckpointableIterator[T], depth: int = 2) -> Prefetched[T]:
    """`iterator`'s items, fetched up to `depth` ahead by a background thread, with the same
    ``get_state()`` / ``set_state()`` checkpoints (see the module docstring)."""
    return Prefetched(iterator, depth)
