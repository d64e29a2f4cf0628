"""The training loop: a run is a config plus a workdir, and rerunning it resumes.

`train(cfg, workdir)` builds the data (or reuses it), restores the newest
complete checkpoint if there is one, and trains to `train.steps`, logging
every step and evaluating and checkpointing periodically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from lm import config as config_lib
from lm.config_checks import skip_ranges
from lm.data.build import RunData, build_run_data
from lm.data.loader import eval_batches
from lm.data.prefetch import prefetch
from lm.files import write_json_atomic
from lm.parallel.distributed import barrier, is_main_process
from lm.parallel.rules import batch_sharding
from lm.parallel.setup import parallelism_from_config
from lm.parallel.sharding import use_mesh_rules
from lm.scaling.counts import mfu_flops_per_token, param_counts
from lm.train.anomaly import Spike, detector_from_config
from lm.train.batch_stream import BatchStream
from lm.train.checkpoint import Checkpointer
from lm.train.metrics import ANOMALY, METRICS_FILE, MetricsLogger, read_metrics
from lm.train.optim import lr_schedule, warmup_note
from lm.train.plots import plot_loss
from lm.train.preemption import Preempted, StopSignal, process_all_gather
from lm.train.peak import mfu, peak_flops_per_device
from lm.train.state import init_state, state_layout
from lm.train.step import jit_train_step, make_eval_step


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def check_workdir_config(cfg: ml_collections.ConfigDict, workdir: Path, *, write: bool = True) -> None:
    """Record the config in the workdir. A run that already exists there must keep its model,
    data and batch size; the rest of `train` (steps, schedule, eval frequency) and the mesh
    may change (checkpoints are resharded onto the new mesh when restored)."""
    path = workdir / "config.json"
    current = config_lib.to_json_dict(cfg)
    if path.exists():
        saved = json.loads(path.read_text())
        fixed = [(section, key) for section in ("model", "data") for key in current[section]]
        for section, key in fixed + [("train", "batch_size")]:  # the data state counts batches
            # a field added since the run started has its default there
            default = config_lib.default_config()[section][key]
            value, old = current[section][key], saved.get(section, {}).get(key, default)
            if _plain(old) != _plain(value):
                raise config_lib.ConfigError(
                    f"config field '{section}.{key}' is {value!r} but the run in {workdir} was "
                    f"started with {old!r}; use a new --workdir or the original value")
    if write:
        write_json_atomic(current, path)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def global_batch(local: dict, sharding: jax.sharding.NamedSharding) -> dict:
    """This host's rows of a batch as global arrays laid out by `sharding`."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def evaluate(eval_step, params: Any, batches: list[dict]) -> dict[str, float]:
    """Mean held-out loss (nats per token) and perplexity over fixed batches."""
    totals = {"nll": 0.0, "tokens": 0.0}
    for batch in batches:
        sums = jax.device_get(eval_step(params, batch))
        totals["nll"] += float(sums["nll"])
        totals["tokens"] += float(sums["tokens"])
    loss = totals["nll"] / max(totals["tokens"], 1.0)
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "tokens": totals["tokens"]}


def train(cfg: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    """Train (or resume) the run in `workdir`; returns a summary of the final state.

    SIGTERM or SIGINT stops it after the step in flight with a checkpoint of that step
    (`Preempted`, lm.train.preemption); loss spikes are handled as `train.spike_action`
    says (lm.train.anomaly)."""
    workdir = Path(workdir)
    main = is_main_process()
    m, d, t = cfg.model, cfg.data, cfg.train
    data_dir = Path(d.prepared_dir) if d.prepared_dir else workdir
    if main:  # one process writes the config and builds the data; the others then read them
        workdir.mkdir(parents=True, exist_ok=True)
        check_workdir_config(cfg, workdir)
        data: RunData = build_run_data(d, m.vocab_size, data_dir)
    barrier("lm-data-built")
    if not main:
        check_workdir_config(cfg, workdir, write=False)
        data = build_run_data(d, m.vocab_size, data_dir)

    layout = parallelism_from_config(cfg)
    mesh, rules, pipeline = layout.mesh, layout.rules, layout.pipeline
    run_layout = state_layout(cfg, mesh, rules)
    graphdef, optimizer = run_layout.graphdef, run_layout.optimizer
    param_sh, state_sh = run_layout.param_shardings, run_layout.state_shardings
    state = init_state(cfg, run_layout, mesh, rules)
    batch_sh = batch_sharding(mesh, rules)
    counts = param_counts(m)
    if main:
        print(f"[model] {counts.total:,} parameters ({counts.non_embedding:,} non-embedding) on "
              f"{mesh.size} devices, mesh {dict(mesh.shape)}"
              + (f", pipeline bubble {pipeline.bubble_fraction:.1%}" if pipeline else ""), flush=True)
        if warmup_note(t):
            print(f"[train] note: {warmup_note(t)}", flush=True)

    iterator = data.train_batches(t.batch_size, t.steps)
    if d.prefetch:  # a thread fetches the next batches while the step runs
        iterator = prefetch(iterator, d.prefetch)
    stream = BatchStream(iterator, skip_ranges(t), plant_at=t.plant_bad_batch_at,
                         vocab_size=m.vocab_size, seed=t.seed)
    fresh_data_state = stream.state()
    detector = detector_from_config(t)
    heldout = [global_batch(b, batch_sh) for b in eval_batches(
        data.heldout, seq_len=d.seq_len, batch_size=t.batch_size, num_batches=t.eval_batches,
        bos_id=data.tokenizer.bos_id, eos_id=data.tokenizer.eos_id)]
    checkpointer = Checkpointer(workdir / "checkpoints", keep_last=t.keep_last,
                                keep_every=t.keep_every, async_save=t.async_checkpoint)

    def restore() -> int:
        """Put the newest good checkpoint (or the fresh state) into `state`, `stream` and
        `detector`; its step (0: fresh, or a converted checkpoint from lm convert from-hf)."""
        nonlocal state
        restored = checkpointer.restore_latest(run_layout.abstract_state,
                                               fallback=t.checkpoint_fallback)
        if restored is None:
            state = init_state(cfg, run_layout, mesh, rules)
            stream.set_state(fresh_data_state, 0)
            spikes = None
        else:
            state = restored.state
            stream.set_state(restored.data, restored.step)
            spikes = restored.data.get("spikes")
        if detector is not None:
            detector.set_state(spikes)
        return 0 if restored is None else restored.step

    start = restore() if checkpointer.all_steps() else 0
    if start and main:
        print(f"[train] resumed from step {start} in {checkpointer.directory}", flush=True)

    # the step always takes spike limits (infinite unless spike_action is "skip"), so every
    # action runs the same compiled program and their losses compare bit for bit
    no_limits = {"loss": np.float32(np.inf), "grad_norm": np.float32(np.inf)}
    train_step = jit_train_step(graphdef, optimizer, t, pipeline, out_shardings=(state_sh, None),
                                in_shardings=(state_sh, batch_sh, replicated(mesh)))
    eval_step = jax.jit(make_eval_step(graphdef, pipeline, t.loss_chunk),
                        in_shardings=(param_sh, batch_sh))
    schedule = lr_schedule(t)
    peak, peak_source = peak_flops_per_device(m.compute_dtype)
    flops_per_step = mfu_flops_per_token(m, d.seq_len) * t.batch_size * d.seq_len
    meta = {"param_counts": vars(counts), "peak_flops": peak, "peak_source": peak_source}
    logger = MetricsLogger(workdir, total_steps=t.steps, start_step=start, enabled=main)

    def save(at: int) -> None:
        data_state = stream.state()
        if detector is not None:
            data_state["spikes"] = detector.state()
        checkpointer.save(at, state, data_state, meta)

    bad_in_a_row = bad_total = rollbacks = 0
    saved_at = start
    step = start
    last_time = time.perf_counter()
    with use_mesh_rules(mesh, rules), StopSignal(all_gather=process_all_gather()) as stop:
        try:
            while step < t.steps:
                position, local = stream.next()
                limits = detector.limits() if detector is not None else None
                passed = ({k: np.float32(v) for k, v in limits.items()}
                          if t.spike_action == "skip" else no_limits)
                state, metrics = train_step(state, global_batch(local, batch_sh), passed)
                metrics = {k: v.item() for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                step_time, last_time = now - last_time, now
                finite = metrics.pop("finite")
                metrics.pop("accepted", None)
                bad_in_a_row = 0 if finite else bad_in_a_row + 1
                bad_total += 0 if finite else 1
                spikes = detector.check(step + 1, metrics, limits) if detector and finite else []
                if (step + 1) % t.log_every == 0 or step == start or not finite or spikes:
                    metrics.update(
                        perplexity=float(np.exp(min(metrics["loss"], 50.0))),
                        lr=float(schedule(step)), step_time=step_time,
                        tokens_per_s=metrics["tokens"] / step_time,
                        mfu=mfu(flops_per_step, step_time, mesh.size, peak),
                        skipped_steps=bad_total)
                    logger.log(step + 1, metrics)
                if bad_in_a_row >= t.max_bad_steps:
                    raise TrainingDiverged(
                        f"{bad_in_a_row} steps in a row (up to step {step + 1}) had a non-finite loss "
                        f"or gradient; their updates were skipped. The last good checkpoint is step "
                        f"{checkpointer.latest_step()} in {checkpointer.directory}; lower train.lr "
                        f"or raise train.max_bad_steps")
                if spikes and t.spike_action == "rollback":
                    rollbacks += 1
                    if rollbacks > t.max_bad_steps:
                        raise TrainingDiverged(
                            f"{rollbacks} loss spikes were rolled back (the last at step {step + 1}); "
                            f"lower train.lr or raise train.max_bad_steps")
                    checkpointer.wait()
                    back_to = restore()
                    skip_end = position + 1 + t.rollback_skip_batches
                    skipped = f"{stream.position}:{skip_end}"
                    stream.skip_to(skip_end)
                    for spike in spikes:
                        logger.event(step + 1, ANOMALY, spike_record(
                            spike, "rollback", rolled_back_to=back_to, skipped_batches=skipped))
                    logger.rewind(back_to)
                    step = saved_at = back_to
                    last_time = time.perf_counter()
                    continue
                for spike in spikes:
                    logger.event(step + 1, ANOMALY, spike_record(spike, t.spike_action))
                step += 1
                if step % t.eval_every == 0 or step == t.steps:
                    logger.log(step, evaluate(eval_step, state["params"], heldout), kind="eval")
                saved_at = checkpoint_or_stop(step, t, saved_at, bad_in_a_row, save, stop, checkpointer)
                last_time = time.perf_counter()  # eval and checkpoint time is not step time
        finally:
            if d.prefetch:
                iterator.close()
            checkpointer.close()
            logger.close()
    summary = {"workdir": str(workdir), "step": int(state["step"]), "tokenizer": str(data.tokenizer.path)}
    if main:
        summary["anomalies"] = report_anomalies(workdir / METRICS_FILE)
        summary["loss_plot"] = str(plot_loss(workdir / METRICS_FILE, workdir / "loss.png"))
    return summary


def checkpoint_or_stop(step: int, t: ml_collections.ConfigDict, saved_at: int, bad_in_a_row: int,
                       save: Callable[[int], None], stop: StopSignal, checkpointer: Checkpointer) -> int:
    """After step `step`: save on the checkpoint schedule (not while steps are going bad);
    when the processes agreed to stop (a signal), make sure this step is saved, wait for the
    save and raise Preempted. Returns the step last saved."""
    if (step % t.checkpoint_every == 0 or step == t.steps) and not bad_in_a_row:
        save(step)
        saved_at = step
    if stop.agreed() and step < t.steps:
        if saved_at != step:
            save(step)
        checkpointer.wait()  # synchronous: the process may be killed soon after
        raise Preempted(stop.received or "a signal to another process", step,
                        str(checkpointer.directory / str(step)))
    return saved_at


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def spike_record(spike: Spike, action: str, **extra: Any) -> dict[str, Any]:
    """The metrics.jsonl fields of a spike event."""
    return {"metric": spike.metric, "value": spike.value, "median": spike.median,
            "limit": spike.limit, "action": action, **extra}


def report_anomalies(metrics_path: Path) -> list[dict]:
    """Print the run's spike events (all launches) as the end-of-run summary; return them."""
    events = read_metrics(metrics_path, kind=ANOMALY) if metrics_path.exists() else []
    lines = [f"step {e['step']}: {e['metric']} {e['value']:.4g} over its limit {e['limit']:.4g} "
             f"(running median {e['median']:.4g}); {e['action']}"
             + (f" to step {e['rolled_back_to']}, skipping batches {e['skipped_batches']}"
                if e["action"] == "rollback" else "") for e in events]
    print(f"[train] {len(events) or 'no'} loss or gradient-norm spike{'s' * (len(events) != 1)}"
          + "".join(f"\n  {x}" for x in lines), flush=True)
    return [{k: v for k, v in e.items() if k != "time"} for e in events]
