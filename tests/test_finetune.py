"""Instruction tuning: reading Alpaca and chat JSONL (errors name file:line), the chat template
and its loss weights, packing with segment ids, zero gradient from prompt tokens, and an
end-to-end `lm finetune` from a converted-style workdir that resumes and samples with --chat."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.cli import main
from lm.config import default_config
from lm.convert.workdir import write_workdir
from lm.data.read import DataError
from lm.data.tokenizer import Tokenizer, train_tokenizer
from lm.finetune.chat import DEFAULT_TEMPLATE, TEMPLATE_FILE, load_template, render
from lm.finetune.sft_data import (Conversation, PackedBatches, pack_rows, read_conversations,
                                  skip_note, tokenize_examples)
from lm.finetune.synthetic import TASKS, synthetic_split
from lm.train.loss import cross_entropy_sums
from lm.train.metrics import read_metrics
from lm.train.state import build_model
from lm.train.step import batch_loss_sums
from tests.helpers import stdlib_texts, tiny_model_config

SEQ_LEN = 64
PACK_LEN = 128


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return train_tokenizer(stdlib_texts()[:6], tmp_path_factory.mktemp("tok"), vocab_size=400)


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


ALPACA = {"instruction": "Repeat the last word.", "input": "path value", "output": "value"}
CHAT = {"messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Count the words of: a b c"},
                     {"role": "assistant", "content": "3"}]}


def test_alpaca_and_chat_records_become_messages(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [ALPACA, "", CHAT,
                                              {"instruction": "Say hi.", "input": "", "output": "hi"}])
    got = read_conversations(path)
    assert [c.where for c in got] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    assert got[0].messages == [{"role": "user", "content": "Repeat the last word.\n\npath value"},
                               {"role": "assistant", "content": "value"}]
    assert got[1].messages == CHAT["messages"]
    assert got[2].messages[0] == {"role": "user", "content": "Say hi."}


@pytest.mark.parametrize("line, message", [
    ('{"messages": [', ":2: malformed JSON (Expecting value at column 15); fix or delete this line"),
    ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]},
     ":2: messages[0] has no 'role'; give one of system, user, assistant"),
    ({"messages": [{"role": "bot", "content": "hi"}]},
     ":2: messages[0] has role 'bot'; use one of system, user, assistant"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
     ":2: messages[1] is an empty assistant response; give it text or drop the example"),
    ({"messages": [{"role": "user", "content": "hi"}]},
     ":2: the conversation has no assistant message, so nothing to learn"),
    ({"messages": [{"role": "user"}]}, ":2: messages[0] (user) has no string 'content'"),
    ({"instruction": "Say hi.", "output": ""},
     ":2: 'output' is empty (an empty response); give it text or drop the example"),
    ({"instruction": "Say hi."},
     ":2: 'output' must be a string (Alpaca fields: instruction, input (optional), output)"),
    ({"text": "hi"}, ":2: has neither 'messages' (chat) nor 'instruction' and 'output' (Alpaca); "
                     "fields: ['text']"),
    ("[1, 2]", ":2: expected a JSON object, got list"),
])
def test_bad_lines_are_errors_naming_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [ALPACA, line])
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert str(err.value) == f"{path}{message}"


def test_an_empty_or_missing_file_is_an_error(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", " "])
    with pytest.raises(DataError, match=f"^{empty} holds no examples$"):
        read_conversations(empty)
    with pytest.raises(DataError, match="does not exist; give --data a JSONL file of examples"):
        read_conversations(tmp_path / "absent.jsonl")


def test_the_template_weights_response_tokens_only(tokenizer):
    messages = CHAT["messages"]
    tokens, weights = render(messages, DEFAULT_TEMPLATE, tokenizer)
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    prompt = tokenizer.encode("### System:\nBe brief.\n\n### User:\nCount the words of: a b c\n\n"
                              "### Assistant:\n")
    response = tokenizer.encode("3")
    assert tokens.tolist() == [bos] + prompt + response + [eos]
    assert weights.tolist() == [0] * (1 + len(prompt)) + [1] * (len(response) + 1)
    assert tokenizer.decode(tokens[1:-1]) == "### System:\nBe brief.\n\n### User:\nCount the words of: a b c\n\n" \
                                             "### Assistant:\n3"
    # the generation prompt is exactly the trained prefix before the response
    prompt_tokens, prompt_weights = render(messages[:-1], DEFAULT_TEMPLATE, tokenizer, generation_prompt=True)
    assert prompt_tokens.tolist() == [bos] + prompt and not prompt_weights.any()


def examples_of(tokenizer, n: int, long_every: int = 0, seq_len: int = SEQ_LEN):
    conversations = []
    for i in range(n):
        words = " ".join(["value"] * (40 if long_every and i % long_every == 0 else 1 + i % 5))
        conversations.append(Conversation(f"f.jsonl:{i + 1}", [
            {"role": "user", "content": f"Count the words of: {words}"},
            {"role": "assistant", "content": str(1 + i % 5)}]))
    return conversations, tokenize_examples(conversations, DEFAULT_TEMPLATE, tokenizer, seq_len)


def test_too_long_examples_are_skipped_and_counted(tokenizer):
    conversations, examples = examples_of(tokenizer, 12, long_every=5)
    assert examples.too_long == ["f.jsonl:1", "f.jsonl:6", "f.jsonl:11"]
    assert len(examples.tokens) == 9 and all(len(t) - 1 <= SEQ_LEN for t in examples.tokens)
    assert skip_note(examples, 12, SEQ_LEN, Path("f.jsonl")) == (
        "skipped 3 of 12 examples of f.jsonl longer than data.seq_len=64 tokens (lines 1, 6, 11)")


def test_packing_gives_each_example_a_segment_and_masks_its_prompt(tokenizer):
    _, examples = examples_of(tokenizer, 30, seq_len=PACK_LEN)
    rows = pack_rows(examples, PACK_LEN, seed=3)
    assert set(rows) == {"inputs", "targets", "segment_ids", "positions", "loss_mask"}
    found = []
    for r in range(len(rows["inputs"])):
        segments = rows["segment_ids"][r]
        used = segments > 0
        assert used[0] and (np.diff(used.astype(int)) <= 0).all()  # padding only at the end
        assert np.array_equal(np.unique(segments[used]), np.arange(1, segments.max() + 1))
        for s in range(1, segments.max() + 1):
            at = segments == s
            assert np.array_equal(rows["positions"][r][at], np.arange(at.sum()))
            sequence = np.concatenate([rows["inputs"][r][at][:1], rows["targets"][r][at]])
            found.append((sequence.tolist(), rows["loss_mask"][r][at].tolist()))
        assert not rows["loss_mask"][r][~used].any() and not rows["inputs"][r][~used].any()
    expected = [(t.tolist(), w[1:].tolist()) for t, w in zip(examples.tokens, examples.weights)]
    assert sorted(found) == sorted(expected)  # every example whole, exactly once
    # first fit: no two rows' examples would fit in one row, so rows are full enough
    used = (rows["segment_ids"] > 0).sum(axis=1)
    assert len(used) < len(examples.tokens) and (used[:, None] + used[None, :] > PACK_LEN)[~np.eye(len(used), dtype=bool)].all()
    assert all(np.array_equal(a, b) for a, b in zip(rows.values(), pack_rows(examples, PACK_LEN, 3).values()))


def test_batches_cover_every_row_each_epoch_and_resume_from_their_state(tokenizer):
    _, examples = examples_of(tokenizer, 40, seq_len=PACK_LEN)
    rows = pack_rows(examples, PACK_LEN, seed=0)
    n = len(rows["inputs"])
    batches = PackedBatches(rows, global_batch_size=n, seed=1)
    first, second = next(batches), next(batches)
    for epoch in (first, second):
        assert sorted(map(bytes, epoch["inputs"])) == sorted(map(bytes, rows["inputs"]))
    assert not np.array_equal(first["inputs"], second["inputs"])  # reshuffled
    resumed = PackedBatches(rows, global_batch_size=n, seed=1)
    resumed.set_state(json.loads(json.dumps({"next_index": 1})))
    assert np.array_equal(next(resumed)["inputs"], second["inputs"])
    whole = next(PackedBatches(rows, global_batch_size=4, seed=1))
    for host in (0, 1):  # global row i of a batch goes to host i % 2
        part = next(PackedBatches(rows, global_batch_size=4, seed=1, process_index=host, process_count=2))
        assert np.array_equal(part["inputs"], whole["inputs"][host::2])


def test_prompt_tokens_get_zero_gradient(tokenizer):
    """Changing the targets of prompt positions changes neither the SFT loss nor its gradient,
    exactly; changing one response target changes both; the loss's gradient with respect to
    the logits is exactly zero at every prompt position."""
    m = tiny_model_config(vocab_size=tokenizer.vocab_size, max_seq_len=PACK_LEN)
    graphdef, params = build_model(m, seed=0)
    _, examples = examples_of(tokenizer, 8, seq_len=PACK_LEN)
    batch = {k: jnp.asarray(v[:2]) for k, v in pack_rows(examples, PACK_LEN, seed=0).items()}
    assert batch["segment_ids"].max() >= 2  # packed rows
    mask = np.asarray(batch["loss_mask"]) > 0
    prompt = (np.asarray(batch["segment_ids"]) > 0) & ~mask
    assert mask.sum() > 0 and prompt.sum() > 2 * mask.sum()

    @jax.jit
    def loss_and_grads(params, batch):
        def nll(p):
            sums = batch_loss_sums(graphdef, p, batch)
            return sums["nll"], sums["tokens"]
        return jax.value_and_grad(nll, has_aux=True)(params)

    def with_targets(where, seed):
        noise = np.random.default_rng(seed).integers(3, tokenizer.vocab_size, mask.shape)
        return {**batch, "targets": jnp.where(where, noise, batch["targets"]).astype(jnp.int32)}

    (loss, tokens), grads = loss_and_grads(params, batch)
    assert float(tokens) == mask.sum()  # the loss counts response tokens only
    (same_loss, _), same_grads = loss_and_grads(params, with_targets(prompt, seed=1))
    assert float(loss) == float(same_loss)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), grads, same_grads)
    one_response = np.zeros_like(mask)
    one_response[tuple(np.argwhere(mask)[0])] = True
    (other_loss, _), other_grads = loss_and_grads(params, with_targets(one_response, seed=2))
    assert float(other_loss) != float(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(other_grads), jax.tree.leaves(grads)))
    logits = jax.random.normal(jax.random.key(0), (*mask.shape, tokenizer.vocab_size))
    dlogits = jax.jit(jax.grad(lambda x: cross_entropy_sums(x, batch["targets"], batch["loss_mask"] > 0)["nll"]))(logits)
    assert not np.asarray(dlogits)[~mask].any() and np.abs(np.asarray(dlogits)[mask]).sum(-1).min() > 0


def test_the_synthetic_set_is_deterministic_and_split_by_prompt():
    vocabulary = ["path", "value", "index", "name", "mode", "size", "line", "data"]
    train, heldout = synthetic_split(60, 12, vocabulary=vocabulary)
    assert (train, heldout) == synthetic_split(60, 12, vocabulary=vocabulary)
    assert len(train) == 60 and len(heldout) == 12
    prompts = lambda xs: {json.dumps(x.get("messages", [x.get("instruction"), x.get("input")])) for x in xs}
    assert not prompts(train) & prompts(heldout)
    assert {(x["task"], "messages" in x) for x in train} == {(t, chat) for t in TASKS for chat in (False, True)}
    for x in train:
        if x["task"] == "join_words" and "input" in x:
            assert x["output"] == x["input"].replace(" ", "_")


# --- end to end: lm finetune from a workdir, resume, sample --chat ----------------------------

@pytest.fixture(scope="module")
def source_run(tmp_path_factory, tokenizer) -> Path:
    """A tiny model's workdir as `lm convert from-hf` writes one (lm.convert.workdir): config,
    tokenizer and a step-0 checkpoint."""
    run = tmp_path_factory.mktemp("src")
    cfg = default_config()
    cfg.model = tiny_model_config(vocab_size=tokenizer.vocab_size, max_seq_len=SEQ_LEN)
    cfg.data.seq_len = SEQ_LEN
    _, params = build_model(cfg.model, seed=0)
    write_workdir(cfg, params, run, {"source": "test"})
    (run / "tokenizer").mkdir()
    shutil.copyfile(tokenizer.path, run / "tokenizer" / "tokenizer.model")
    return run


SFT_ARGS = ["--config.train.batch_size=2", "--config.train.warmup_steps=1", "--config.train.lr=0.003",
            "--config.train.checkpoint_every=2", "--config.data.prefetch=0"]


def test_finetune_resumes_and_samples_with_the_chat_template(source_run, tmp_path, tokenizer, capsys):
    long_chat = {"messages": [{"role": "user", "content": "value " * 80}, {"role": "assistant", "content": "x"}]}
    data = write_lines(tmp_path / "sft.jsonl", [ALPACA, CHAT, long_chat] * 4)
    out = tmp_path / "sft"
    finetune = ["finetune", "--workdir", str(source_run), "--data", str(data), "--output", str(out), *SFT_ARGS]
    assert main([*finetune, "--config.train.steps=3"]) == 0
    printed = capsys.readouterr().out
    assert (f"[finetune] skipped 4 of 12 examples of {data} longer than data.seq_len=64 tokens "
            "(lines 3, 6, 9, 12)") in printed
    assert json.loads(printed.strip().splitlines()[-1])["step"] == 3
    assert load_template(out) == DEFAULT_TEMPLATE
    assert json.loads((out / TEMPLATE_FILE).read_text())["assistant"]["prefix"] == "### Assistant:\n"
    record = json.loads((out / "finetune.json").read_text())
    assert record["source"] == str(source_run.resolve()) and record["source_step"] == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    # the loss counts response tokens only: those of the first batch's two rows
    first = next(PackedBatches(pack_rows(tokenize_examples(read_conversations(data), DEFAULT_TEMPLATE,
                                                           tokenizer, SEQ_LEN), SEQ_LEN, 0), 2, 0))
    assert rows[0]["tokens"] == first["loss_mask"].sum() < (first["segment_ids"] > 0).sum()

    assert main([*finetune, "--config.train.steps=5"]) == 0  # rerun: resume, then two more steps
    assert "[finetune] resumed from step 3" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "5"]

    assert main(["sample", "--workdir", str(out), "--chat", "--prompt", "Say hi.", "--temperature", "0",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("--- sample (step 5) ---\n")
    assert main(["sample", "--workdir", str(source_run), "--chat", "--prompt", "hi"]) == 1
    assert capsys.readouterr().err == (
        f"lm sample: error: {source_run / TEMPLATE_FILE} does not exist: {source_run} has no chat "
        "template; fine-tune it with `lm finetune` (which writes one) first\n")

    other = write_lines(tmp_path / "other.jsonl", [ALPACA])
    assert main(["finetune", "--workdir", str(source_run), "--data", str(other), "--output", str(out)]) == 2
    assert f"but --data {other} has sha256" in capsys.readouterr().err
