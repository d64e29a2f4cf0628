"""`lm finetune`: instruction tuning (SFT) of a run's newest checkpoint, into a new workdir.

    lm finetune --workdir SRC --data FILE.jsonl --output DIR [--config FILE] [--config.S.F=V ...]

SRC is any lm workdir with a checkpoint: a pretraining run, an earlier fine-tune, or a
model imported with `lm convert from-hf`. DIR becomes an lm workdir of its own:

    config.json          SRC's config, then --config FILE's get_config() overrides, then the
                         --config.* overrides (train.steps, train.lr, data.seq_len, ... of the
                         fine-tune); the data fields name no corpus: the tokenizer is DIR's copy
    tokenizer/           SRC's tokenizer, copied
    chat_template.json   the chat template (SRC's if it has one, else the default;
                         lm.finetune.chat), used by `lm sample --chat`
    finetune.json        the source workdir and step, and the data file with its sha256
    checkpoints/, metrics.jsonl   as `lm train` writes them

The parameters start from SRC's newest checkpoint with a fresh optimizer state, and train
with lm train's step on packed rows in which only response tokens carry loss
(lm.finetune.sft_data). Rerunning the command resumes from DIR's newest checkpoint; the
model, data fields and batch size must stay as they were, and so must the data file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from lm.config import ConfigError, apply_overrides, call_python_file, from_json_dict, merge, to_json_dict, validate
from lm.data.build import run_tokenizer_path
from lm.data.read import DataError
from lm.data.tokenizer import MODEL_FILE, Tokenizer
from lm.files import write_json_atomic
from lm.finetune.chat import TEMPLATE_FILE, load_template, save_template, template_for
from lm.finetune.sft_data import PackedBatches, pack_rows, read_conversations, skip_note, tokenize_examples
from lm.parallel.rules import batch_sharding
from lm.parallel.setup import parallelism_from_config
from lm.parallel.sharding import use_mesh_rules
from lm.train.checkpoint import Checkpointer
from lm.train.loop import TrainingDiverged, check_workdir_config, checkpoint_or_stop, global_batch
from lm.train.metrics import MetricsLogger
from lm.train.optim import lr_schedule
from lm.train.preemption import StopSignal, process_all_gather
from lm.train.state import StateLayout, read_run_config, restore_params, state_layout
from lm.train.step import init_train_state, jit_train_step

RECORD_FILE = "finetune.json"
# model fields a fine-tune may change: how it computes, not what it computes
MODEL_FIELDS_FREE = ("param_dtype", "compute_dtype", "remat", "attention", "attention_block", "scan_unroll")


def finetune_config(src_cfg: ml_collections.ConfigDict, output: Path, config_file: str | None,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """The fine-tune's config: DIR's own when resuming without --config FILE, else SRC's with
    FILE's overrides; then the --config.* overrides. The data fields that locate a corpus or
    tokenizer are cleared (DIR holds its tokenizer). Model architecture fields must match SRC."""
    saved = Path(output) / "config.json"
    if config_file is None and saved.exists():
        cfg = read_run_config(output)
    else:
        cfg = from_json_dict(to_json_dict(src_cfg))
        if config_file is not None:
            extra = call_python_file(config_file, "get_config", kind="config")
            merge(cfg, extra.to_dict() if isinstance(extra, ml_collections.ConfigDict) else dict(extra))
    apply_overrides(cfg, overrides)
    cfg.data.prepared_corpus = cfg.data.prepared_dir = cfg.data.tokenizer_path = ""
    for key in src_cfg.model:
        if key not in MODEL_FIELDS_FREE and cfg.model[key] != src_cfg.model[key]:
            raise ConfigError(f"config field 'model.{key}' is {cfg.model[key]!r} but the source run's "
                              f"checkpoint has {src_cfg.model[key]!r}; a fine-tune keeps the architecture")
    return validate(cfg)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_record(output: Path, src: Path, data_path: Path, data_sha: str) -> dict | None:
    """DIR's finetune.json, checked against this command's source and data (None if new)."""
    path = output / RECORD_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record["data_sha256"] != data_sha:
        raise ConfigError(f"{output} was fine-tuned on {record['data']} (sha256 {record['data_sha256'][:12]}), "
                          f"but --data {data_path} has sha256 {data_sha[:12]}; use a new --output or the "
                          "original data")
    if record["source"] != str(src.resolve()):
        raise ConfigError(f"{output} was fine-tuned from {record['source']}, not --workdir {src}; use a "
                          "new --output or the original --workdir")
    return record


def run_tokenizer(src: Path, src_cfg: ml_collections.ConfigDict, output: Path, vocab_size: int) -> Tokenizer:
    """DIR's tokenizer, copied from SRC's the first time."""
    path = output / "tokenizer" / MODEL_FILE
    if not path.exists():
        source = run_tokenizer_path(src_cfg.data, src)
        Tokenizer.load(source)  # a clear error if SRC has none
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    tokenizer = Tokenizer.load(path)
    if tokenizer.vocab_size > vocab_size:
        raise DataError(f"tokenizer {path} has {tokenizer.vocab_size} pieces, more than "
                        f"model.vocab_size={vocab_size}")
    return tokenizer


def initial_state(params: Any, layout: StateLayout) -> Any:
    """A train state of `params` (cast and laid out as `layout` says) with a fresh optimizer."""
    params = jax.tree.map(lambda p, a: jax.device_put(p.astype(a.dtype), a.sharding),
                          params, layout.abstract_state["params"])
    return jax.jit(lambda p: init_train_state(p, layout.optimizer),
                   out_shardings=layout.state_shardings)(params)


def finetune(src: Path, data_path: Path, output: Path, *, config_file: str | None = None,
             overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Fine-tune SRC's newest checkpoint on `data_path` into `output`, or resume doing so;
    returns a summary. SIGTERM / SIGINT stop it with a checkpoint (`Preempted`)."""
    src, data_path, output = Path(src), Path(data_path), Path(output)
    if src.resolve() == output.resolve():
        raise ConfigError("--output must differ from --workdir: the fine-tune is a new workdir")
    src_cfg = read_run_config(src)
    cfg = finetune_config(src_cfg, output, config_file, overrides)
    d, t = cfg.data, cfg.train
    if not data_path.is_file():
        raise DataError(f"{data_path} does not exist; give --data a JSONL file of examples")
    data_sha = file_sha256(data_path)
    record = check_record(output, src, data_path, data_sha)
    output.mkdir(parents=True, exist_ok=True)
    check_workdir_config(cfg, output)
    tokenizer = run_tokenizer(src, src_cfg, output, cfg.model.vocab_size)
    template = load_template(output) if (output / TEMPLATE_FILE).exists() else template_for(src)
    save_template(template, output)

    conversations = read_conversations(data_path)
    examples = tokenize_examples(conversations, template, tokenizer, d.seq_len)
    note = skip_note(examples, len(conversations), d.seq_len, data_path)
    if note:
        print(f"[finetune] {note}", flush=True)
    rows = pack_rows(examples, d.seq_len, d.seed)
    used = float(np.mean(rows["segment_ids"] > 0))
    print(f"[finetune] {len(examples.tokens)} examples packed into {len(rows['inputs'])} rows of "
          f"{d.seq_len} ({used:.0%} of positions used), {examples.num_loss_tokens:,} response "
          "tokens carry the loss", flush=True)
    batches = PackedBatches(rows, t.batch_size, d.seed, process_index=jax.process_index(),
                            process_count=jax.process_count())

    parallel = parallelism_from_config(cfg)
    mesh, rules = parallel.mesh, parallel.rules
    layout = state_layout(cfg, mesh, rules)
    batch_sh = batch_sharding(mesh, rules)
    checkpointer = Checkpointer(output / "checkpoints", keep_last=t.keep_last, keep_every=t.keep_every,
                                async_save=t.async_checkpoint)
    restored = (checkpointer.restore_latest(layout.abstract_state, fallback=t.checkpoint_fallback)
                if checkpointer.all_steps() else None)
    if restored is not None:
        state, start = restored.state, restored.step
        batches.set_state(restored.data["iterator"])
        print(f"[finetune] resumed from step {start} in {checkpointer.directory}", flush=True)
    else:
        _, params, source_step = restore_params(src, src_cfg, command="lm finetune")
        state, start = initial_state(params, layout), 0
        record = {"source": str(src.resolve()), "source_step": source_step,
                  "data": str(data_path.resolve()), "data_sha256": data_sha}
        write_json_atomic(record, output / RECORD_FILE)
        print(f"[finetune] starting from step {source_step} of {src}", flush=True)

    train_step = jit_train_step(layout.graphdef, layout.optimizer, t, parallel.pipeline,
                                in_shardings=(layout.state_shardings, batch_sh),
                                out_shardings=(layout.state_shardings, None))
    schedule = lr_schedule(t)
    logger = MetricsLogger(output, total_steps=max(t.steps, start), start_step=start,
                           enabled=jax.process_index() == 0)
    meta = {"finetune": record}

    def save(at: int) -> None:
        checkpointer.save(at, state, {"iterator": batches.get_state()}, meta)

    step, saved_at, bad_in_a_row = start, start, 0
    last_time = time.perf_counter()
    with use_mesh_rules(mesh, rules), StopSignal(all_gather=process_all_gather()) as stop:
        try:
            while step < t.steps:
                state, metrics = train_step(state, global_batch(next(batches), batch_sh))
                metrics = {k: v.item() for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                step_time, last_time = now - last_time, now
                finite = metrics.pop("finite")
                bad_in_a_row = 0 if finite else bad_in_a_row + 1
                if (step + 1) % t.log_every == 0 or step == start or not finite:
                    logger.log(step + 1, {**metrics, "lr": float(schedule(step)), "step_time": step_time,
                                          "tokens_per_s": metrics["tokens"] / step_time})
                if bad_in_a_row >= t.max_bad_steps:
                    raise TrainingDiverged(
                        f"{bad_in_a_row} steps in a row (up to step {step + 1}) had a non-finite loss "
                        f"or gradient; their updates were skipped; lower train.lr")
                step += 1
                saved_at = checkpoint_or_stop(step, t, saved_at, bad_in_a_row, save, stop, checkpointer)
                last_time = time.perf_counter()
        finally:
            checkpointer.close()
            logger.close()
    return {"output": str(output), "step": step, "examples": len(examples.tokens),
            "skipped_too_long": len(examples.too_long), "rows": int(len(rows["inputs"])),
            "response_tokens": examples.num_loss_tokens,
            "chat_template": str(output / TEMPLATE_FILE)}
