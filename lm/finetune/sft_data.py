"""Instruction-tuning data: JSONL conversations -> tokenized examples -> packed rows.

Each non-blank line of the file (``.jsonl``, ``.jsonl.gz`` or ``.jsonl.zst``) is one example:

- Alpaca style: ``{"instruction": str, "input": str (optional), "output": str}``, read as a
  user message (the instruction, then a blank line and the input when it is non-empty)
  and the assistant's response (the output);
- chat style: ``{"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}``.

A malformed line (bad JSON, a message without a role or with an unknown one, a missing or
non-string field, an empty response, a conversation with no assistant message) is a
DataError naming ``file:line`` and the field: nothing is dropped silently. An example
longer than the rows (more than seq_len tokens once rendered) is skipped and counted
(`SFTExamples.too_long`, with its line numbers); the caller prints the count.

Packing: examples are shuffled with the seed once and placed whole, first fit, into rows
of seq_len positions. Each example is its own segment (segment ids 1, 2, ... within a
row, positions restarting at 0), the rest of a row is padding (segment 0), and
``loss_mask`` is 1 only where the target is a response token (lm.finetune.chat). Row j
of the run is row ``permutation(seed, epoch)[j % rows]`` of epoch ``j // rows``: a pure
function of j, so the batch iterator's state is one index, as lm.data.loader's is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from lm.data.read import DataError, jsonl_lines, jsonl_object
from lm.finetune.chat import ASSISTANT, ROLES, ChatTemplate, TextTokenizer, render

FIELDS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")


@dataclasses.dataclass(frozen=True)
class Conversation:
    """One example's messages and where it came from (``file:line``)."""

    where: str
    messages: list[dict[str, str]]


def read_conversations(path: Path) -> list[Conversation]:
    """Every example of an Alpaca or chat JSONL file, validated (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give --data a JSONL file of examples")
    conversations = []
    for lineno, raw in jsonl_lines(path):
        record = jsonl_object(path, lineno, raw)
        if record is not None:
            where = f"{path}:{lineno}"
            conversations.append(Conversation(where, conversation_messages(record, where)))
    if not conversations:
        raise DataError(f"{path} holds no examples")
    return conversations


def conversation_messages(record: Any, where: str) -> list[dict[str, str]]:
    """The checked messages of one JSONL record (chat or Alpaca); DataError naming `where`."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        return _chat_messages(record["messages"], where)
    if "instruction" in record or "output" in record:
        return _alpaca_messages(record, where)
    raise DataError(f"{where}: has neither 'messages' (chat) nor 'instruction' and 'output' "
                    f"(Alpaca); fields: {sorted(record)}")


def _chat_messages(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} objects")
    checked = []
    for i, message in enumerate(messages):
        at = f"{where}: messages[{i}]"
        if not isinstance(message, dict):
            raise DataError(f"{at} is {type(message).__name__}, expected an object with 'role' and 'content'")
        if "role" not in message:
            raise DataError(f"{at} has no 'role'; give one of {', '.join(ROLES)}")
        role = message["role"]
        if role not in ROLES:
            raise DataError(f"{at} has role {role!r}; use one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            raise DataError(f"{at} ({role}) has no string 'content'")
        if role == ASSISTANT and not content.strip():
            raise DataError(f"{at} is an empty assistant response; give it text or drop the example")
        checked.append({"role": role, "content": content})
    if not any(m["role"] == ASSISTANT for m in checked):
        raise DataError(f"{where}: the conversation has no assistant message, so nothing to learn")
    return checked


def _alpaca_messages(record: dict, where: str) -> list[dict[str, str]]:
    for field in ("instruction", "output", "input"):
        if field == "input" and field not in record:
            continue
        if not isinstance(record.get(field), str):
            raise DataError(f"{where}: '{field}' must be a string (Alpaca fields: instruction, "
                            "input (optional), output)")
    if not record["output"].strip():
        raise DataError(f"{where}: 'output' is empty (an empty response); give it text or drop the example")
    prompt = record["instruction"]
    if record.get("input", "").strip():
        prompt = f"{prompt}\n\n{record['input']}"
    return [{"role": "user", "content": prompt}, {"role": ASSISTANT, "content": record["output"]}]


@dataclasses.dataclass(frozen=True)
class SFTExamples:
    """Tokenized examples that fit a row, and the ones skipped as too long."""

    tokens: list[np.ndarray]  # each [BOS] + rendered conversation
    weights: list[np.ndarray]  # per token: 1 for a response token (lm.finetune.chat.render)
    too_long: list[str]  # file:line of each example over seq_len

    @property
    def num_loss_tokens(self) -> int:
        return int(sum(w[1:].sum() for w in self.weights))


def tokenize_examples(conversations: list[Conversation], template: ChatTemplate,
                      tokenizer: TextTokenizer, seq_len: int) -> SFTExamples:
    """Render each conversation; one needing more than `seq_len` positions (tokens - 1, as
    inputs and targets are the tokens shifted by one) is skipped and recorded."""
    tokens, weights, too_long = [], [], []
    for conversation in conversations:
        ids, weight = render(conversation.messages, template, tokenizer)
        if len(ids) - 1 > seq_len:
            too_long.append(conversation.where)
            continue
        tokens.append(ids)
        weights.append(weight)
    return SFTExamples(tokens, weights, too_long)


def skip_note(examples: SFTExamples, total: int, seq_len: int, source: Path) -> str:
    """The printed line about examples skipped as too long ('' when none was)."""
    if not examples.too_long:
        return ""
    lines = ", ".join(w.rsplit(":", 1)[1] for w in examples.too_long[:5])
    more = ", ..." if len(examples.too_long) > 5 else ""
    return (f"skipped {len(examples.too_long)} of {total} examples of {source} longer than "
            f"data.seq_len={seq_len} tokens (lines {lines}{more})")


def pack_rows(examples: SFTExamples, seq_len: int, seed: int) -> dict[str, np.ndarray]:
    """The examples packed into [rows, seq_len] int32 arrays named by `FIELDS` (module doc)."""
    if not examples.tokens:
        raise DataError(f"no example fits data.seq_len={seq_len}; raise it or shorten the examples")
    order = np.random.default_rng([seed, 0]).permutation(len(examples.tokens))
    rows: list[list[int]] = []  # example indices per row
    free: list[int] = []  # positions left per row
    for i in order:
        length = len(examples.tokens[i]) - 1
        row = next((r for r, left in enumerate(free) if left >= length), None)
        if row is None:
            rows.append([])
            free.append(seq_len)
            row = len(rows) - 1
        rows[row].append(int(i))
        free[row] -= length
    out = {name: np.zeros((len(rows), seq_len), np.int32) for name in FIELDS}
    for r, members in enumerate(rows):
        column = 0
        for segment, i in enumerate(members, start=1):
            ids, weight = examples.tokens[i], examples.weights[i]
            n = len(ids) - 1
            span = slice(column, column + n)
            out["inputs"][r, span] = ids[:-1]
            out["targets"][r, span] = ids[1:]
            out["loss_mask"][r, span] = weight[1:]
            out["segment_ids"][r, span] = segment
            out["positions"][r, span] = np.arange(n)
            column += n
    return out


class PackedBatches:
    """Batches of packed rows for this host, epoch after epoch without end; its state
    (``get_state`` / ``set_state``: ``{"next_index": batches already returned}``) is
    what lm.train.checkpoint saves. Global row i of a batch goes to host i % process_count."""

    def __init__(self, rows: dict[str, np.ndarray], global_batch_size: int, seed: int, *,
                 process_index: int = 0, process_count: int = 1):
        if global_batch_size % process_count:
            raise ValueError(f"global batch size {global_batch_size} is not a multiple of "
                             f"process_count={process_count}")
        self.rows, self.global_batch_size, self.seed = rows, global_batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.num_rows = len(rows["inputs"])
        self.next_index = 0
        self._orders: dict[int, np.ndarray] = {}

    def __iter__(self) -> PackedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        g = self.global_batch_size
        run_rows = np.arange(self.next_index * g, (self.next_index + 1) * g)[self.process_index::self.process_count]
        self.next_index += 1
        picked = np.array([self._row(int(j)) for j in run_rows])
        return {name: values[picked] for name, values in self.rows.items()}

    def _row(self, j: int) -> int:
        epoch, k = divmod(j, self.num_rows)
        return int(self._epoch_order(epoch)[k])

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """The order rows are visited in `epoch` (two epochs cached: a batch may straddle one)."""
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = np.random.default_rng([self.seed, epoch + 1]).permutation(self.num_rows)
        return self._orders[epoch]

    def get_state(self) -> dict[str, int]:
        return {"next_index": self.next_index}

    def set_state(self, state: dict[str, int]) -> None:
        self.next_index = int(state["next_index"])
