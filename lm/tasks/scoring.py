"""Log-likelihoods of continuations and greedy generations of a model, batched.

Text is tokenized as lm-eval does for causal models: trailing whitespace of the context
moves to the continuation, the pair is encoded whole and the continuation is what follows
the context's own encoding. Where a token straddles the boundary (the context's own
tokens are not a prefix of the whole's), the split is where they first differ, so the
scored tokens always decode to context + continuation (lm-eval would drop or repeat
text there). Every context starts with BOS, as every training document does.

Sequences longer than `max_len` lose tokens from the left. Requests are sorted by length
and run in [batch_size, L] batches, L the power of two that fits the longest request of
the call: one shape, one compilation per call (on CPU, compiling a small model costs
more than the padding).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from lm.data.tokenizer import Tokenizer
from lm.sample import greedy_until

MIN_LEN = 16


@functools.partial(jax.jit, static_argnums=(0,))
def _token_logprobs(graphdef: nnx.GraphDef, params: Any, inputs_BxL: jax.Array, segment_ids_BxL: jax.Array,
                    at_BxC: jax.Array, targets_BxC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log p(target) at positions `at` (the head runs there only), and whether each target
    is the argmax there."""
    model = nnx.merge(graphdef, params)
    positions_BxL = jnp.broadcast_to(jnp.arange(inputs_BxL.shape[1]), inputs_BxL.shape)
    hidden_BxLxD = model.hidden(inputs_BxL, positions_BxL, segment_ids_BxL)
    logits_BxCxV = model.logits(jnp.take_along_axis(hidden_BxLxD, at_BxC[..., None], axis=1))
    log_probs = jax.nn.log_softmax(logits_BxCxV.astype(jnp.float32), axis=-1)
    picked_BxC = jnp.take_along_axis(log_probs, targets_BxC[..., None], axis=-1)[..., 0]
    return picked_BxC, jnp.argmax(logits_BxCxV, axis=-1) == targets_BxC


def bucket(length: int, max_len: int, least: int = MIN_LEN) -> int:
    """A padded length: the next power of two, at least `least`, at most `max_len`."""
    return min(max_len, max(least, 1 << max(length - 1, 0).bit_length()))


class Scorer:
    """A model and its tokenizer, scoring and generating in batches."""

    def __init__(self, graphdef: nnx.GraphDef, params: Any, tokenizer: Tokenizer, *, max_len: int,
                 batch_size: int):
        if max_len < 2 or batch_size < 1:
            raise ValueError(f"max_len ({max_len}) must be at least 2 and batch_size ({batch_size}) positive")
        self.graphdef, self.params, self.tokenizer = graphdef, params, tokenizer
        self.max_len, self.batch_size = max_len, batch_size
        self._stop_ids: dict[tuple[str, ...], np.ndarray] = {}

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(BOS + context tokens, continuation tokens), split as lm-eval splits them."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self.tokenizer.bos_id], self.tokenizer.encode(continuation)
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        split = next((i for i, (a, b) in enumerate(zip(whole, context_ids)) if a != b),
                     min(len(whole), len(context_ids)))
        return [self.tokenizer.bos_id] + whole[:split], whole[split:]

    def loglikelihood(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                      desc: str = "loglikelihood") -> list[tuple[float, bool]]:
        """For each (context ids, continuation ids): the summed log-probability of the
        continuation (nats) and whether greedy decoding would produce it."""
        rows = []
        for context, continuation in pairs:
            if not context or not continuation:
                raise ValueError("loglikelihood needs a non-empty context (BOS at least) and continuation")
            if len(continuation) > self.max_len:
                raise ValueError(f"a continuation of {len(continuation)} tokens exceeds max_len {self.max_len}")
            rows.append(((list(context) + list(continuation))[:-1][-self.max_len:], list(continuation)))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        length = bucket(max((len(row) for row, _ in rows), default=1), self.max_len)  # one shape: one compile
        scored = bucket(max((len(c) for _, c in rows), default=1), length, least=4)
        for batch in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
            inputs, segments = np.zeros((2, self.batch_size, length), np.int32)
            at, targets = np.zeros((2, self.batch_size, scored), np.int32)
            for r, i in enumerate(batch):
                row, continuation = rows[i]
                inputs[r, :len(row)], segments[r, :len(row)] = row, 1
                at[r, :len(continuation)] = np.arange(len(row) - len(continuation), len(row))
                targets[r, :len(continuation)] = continuation
            logp, greedy = jax.device_get(_token_logprobs(self.graphdef, self.params, *map(
                jnp.asarray, (inputs, segments, at, targets))))
            for r, i in enumerate(batch):
                n = len(rows[i][1])
                results[i] = (float(np.sum(logp[r, :n], dtype=np.float64)), bool(np.all(greedy[r, :n])))
        return results

    def stop_ids(self, stop: Sequence[str]) -> np.ndarray:
        """EOS and every token whose text contains one of `stop` (generation may end there)."""
        key = tuple(stop)
        if key not in self._stop_ids:
            ids = [i for i in range(self.tokenizer.vocab_size)
                   if any(s in self.tokenizer.decode([i]) for s in stop)]
            ids = sorted({self.tokenizer.eos_id, *ids})
            padded = np.full(bucket(len(ids), 1 << 30, least=8), -1, np.int32)  # few shapes to compile
            padded[:len(ids)] = ids
            self._stop_ids[key] = padded
        return self._stop_ids[key]

    def generate(self, contexts: Sequence[str], *, stop: Sequence[str], max_new_tokens: int,
                 desc: str = "generate") -> list[str]:
        """Greedy continuations of BOS + each context, cut before the first stop string or EOS."""
        if max_new_tokens >= self.max_len:
            raise ValueError(f"max_new_tokens {max_new_tokens} must be below max_len {self.max_len}")
        prompts = [([self.tokenizer.bos_id] + self.tokenizer.encode(c))[-(self.max_len - max_new_tokens):]
                   for c in contexts]
        stop_ids = jnp.asarray(self.stop_ids(stop))
        results = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        length = bucket(max((len(p) for p in prompts), default=1), self.max_len - max_new_tokens)
        for batch in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
            rows = batch + [batch[-1]] * (self.batch_size - len(batch))  # copies stop when it stops
            tokens = np.zeros((self.batch_size, length), np.int32)
            for r, i in enumerate(rows):
                tokens[r, :len(prompts[i])] = prompts[i]
            lengths = np.asarray([len(prompts[i]) for i in rows], np.int32)
            out = jax.device_get(greedy_until(self.graphdef, self.params, jnp.asarray(tokens), jnp.asarray(lengths),
                                              stop_ids, max_new_tokens=max_new_tokens))
            for r, i in enumerate(batch):
                results[i] = self.cut(out[r].tolist(), stop)
        return results

    def cut(self, ids: list[int], stop: Sequence[str]) -> str:
        """The text of generated ids up to EOS and before the first stop string."""
        if self.tokenizer.eos_id in ids:
            ids = ids[:ids.index(self.tokenizer.eos_id)]
        text = self.tokenizer.decode(ids)
        ends = [text.find(s) for s in stop if s in text]
        return text[:min(ends)] if ends else text
