"""The chat template: how a conversation becomes tokens, and which tokens carry the loss.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": str}``.
`render` turns it into ``[BOS] + pieces`` where each message contributes its role's prefix,
its content and its role's suffix (each piece encoded on its own, so the boundaries are
exact token boundaries), and every assistant message is followed by the tokenizer's EOS.
With the default template a one-turn conversation reads, as text,

    <BOS>### User:
    What is 2 + 2?

    ### Assistant:
    4<EOS>

Only the assistant's content, its suffix and the EOS after it are weighted 1 (trained on);
the BOS, the other roles' messages and every prefix are weighted 0. At inference the
conversation so far is rendered with ``generation_prompt=True`` (the assistant's prefix
appended) and the model continues until EOS: the same tokens it was trained on.

The template is stored with a fine-tuned workdir as ``chat_template.json``; `lm sample
--chat` and the synthetic evaluation read it back with `load_template`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from lm.data.read import DataError
from lm.files import write_json_atomic

TEMPLATE_FILE = "chat_template.json"
TEMPLATE_FORMAT = "lm-chat-template-v1"
ROLES = ("system", "user", "assistant")
ASSISTANT = "assistant"


class TextTokenizer(Protocol):
    """What rendering needs of lm.data.tokenizer.Tokenizer."""

    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """Per role, the plain text written before and after a message's content."""

    prefixes: dict[str, str]
    suffixes: dict[str, str]

    def to_json(self) -> dict:
        return {"format": TEMPLATE_FORMAT,
                **{role: {"prefix": self.prefixes[role], "suffix": self.suffixes[role]} for role in ROLES}}


DEFAULT_TEMPLATE = ChatTemplate(
    prefixes={"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"},
    suffixes={"system": "\n\n", "user": "\n\n", "assistant": ""},
)


def render(messages: Sequence[dict], template: ChatTemplate, tokenizer: TextTokenizer, *,
           generation_prompt: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, weights), int32 arrays of one length: the rendered conversation and, per token,
    1 where the token is a response token to learn (assistant content, suffix, EOS), else 0.

    `messages` must be valid (see lm.finetune.sft_data). With `generation_prompt` the
    assistant's prefix is appended, ready for the model to write the next response."""
    tokens, weights = [tokenizer.bos_id], [0]

    def add(ids: list[int], weight: int) -> None:
        tokens.extend(ids)
        weights.extend([weight] * len(ids))

    for message in messages:
        role, learn = message["role"], int(message["role"] == ASSISTANT)
        add(tokenizer.encode(template.prefixes[role]), 0)
        add(tokenizer.encode(message["content"]), learn)
        add(tokenizer.encode(template.suffixes[role]), learn)
        if learn:
            add([tokenizer.eos_id], 1)
    if generation_prompt:
        add(tokenizer.encode(template.prefixes[ASSISTANT]), 0)
    return np.asarray(tokens, np.int32), np.asarray(weights, np.int32)


def response_text(text: str, template: ChatTemplate) -> str:
    """A generated response (decoded up to EOS) without the assistant's suffix."""
    suffix = template.suffixes[ASSISTANT]
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def save_template(template: ChatTemplate, workdir: Path) -> Path:
    """Write `template` to ``workdir/chat_template.json``; its path."""
    path = Path(workdir) / TEMPLATE_FILE
    write_json_atomic(template.to_json(), path)
    return path


def load_template(workdir: Path) -> ChatTemplate:
    """The template stored in ``workdir/chat_template.json``; DataError naming the file and
    the bad field if it is missing or malformed."""
    path = Path(workdir) / TEMPLATE_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist: {workdir} has no chat template; fine-tune it with "
                        "`lm finetune` (which writes one) first")
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or data.get("format") != TEMPLATE_FORMAT:
        raise DataError(f"{path}: 'format' must be {TEMPLATE_FORMAT!r}")
    prefixes, suffixes = {}, {}
    for role in ROLES:
        entry = data.get(role)
        for part, into in (("prefix", prefixes), ("suffix", suffixes)):
            if not isinstance(entry, dict) or not isinstance(entry.get(part), str):
                raise DataError(f"{path}: '{role}.{part}' must be a string")
            into[role] = entry[part]
    return ChatTemplate(prefixes, suffixes)


def template_for(workdir: Path) -> ChatTemplate:
    """The workdir's stored template, or the default when it has none (a pretrained run)."""
    return load_template(workdir) if (Path(workdir) / TEMPLATE_FILE).is_file() else DEFAULT_TEMPLATE
