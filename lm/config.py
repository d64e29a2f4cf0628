"""The one configuration schema for a run: model, data, train and sample.

A config is an `ml_collections.ConfigDict` built from `default_config()` and
changed by an experiment file (`experiments/configs/*.py`, whose
`get_config()` returns overrides on top of the defaults) and by command-line
overrides (`--config.train.steps=200`). `validate` checks every field and
names the bad one and its fix; unknown keys are rejected, not ignored.
"""

from __future__ import annotations

import ast
import difflib
import math
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from lm.config_checks import check_positive, fail, skip_ranges, validate_mesh
from lm.errors import ConfigError
from lm.pyfile import call_python_file

DTYPES = ("float32", "bfloat16")
REMAT_POLICIES = ("none", "full", "dots")
ATTENTION_KERNELS = ("einsum", "blockwise", "xla", "cudnn")
SCHEDULES = ("cosine", "wsd", "constant")
PARAMETRIZATIONS = ("sp", "mup")
PIPELINE_SCHEDULES = ("auto", "gpipe", "circular", "1f1b")  # auto: circular if repeats > 1
SPIKE_ACTIONS = ("none", "log", "skip", "rollback")
TOKENIZER_TYPES = ("bpe", "unigram")
# data fields that choose, split or tokenize the documents: a prepared corpus's recipe decides these.
PREPARED_REPLACES = ("sources", "text_field", "hf_split", "heldout_fraction", "tokenizer_path", "tokenizer_type",
                     "tokenizer_byte_fallback", "tokenizer_split_digits", "tokenizer_max_sentences")


def default_config() -> ml_collections.ConfigDict:
    """Every field of the schema with its default (a small model on the stdlib corpus)."""
    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict()
    m = c.model
    m.vocab_size = 2048
    m.d_model = 128
    m.num_layers = 4
    m.num_heads = 4
    m.num_kv_heads = 4
    m.head_dim = 0  # 0: d_model // num_heads
    m.d_ff = 512
    m.max_seq_len = 2048
    m.rope_theta = 10000.0
    m.norm_eps = 1e-5
    m.tie_embeddings = False
    m.init_std = 0.02
    m.param_dtype = "float32"
    m.compute_dtype = "float32"
    m.remat = "none"
    # einsum: lm's own GQA attention over the whole L x L square; blockwise: the same, query
    # blocks of attention_block positions skipping the causally masked key blocks (training);
    # xla / cudnn: jax.nn.dot_product_attention with that implementation (cudnn: fused flash
    # attention on NVIDIA GPUs, bf16/fp16 only)
    m.attention = "einsum"
    m.attention_block = 128
    # layers per iteration of the layer scan (num_layers or more: fully unrolled); with remat
    # at most num_layers // 2, so remat still saves memory (lm.model.decoder.remat_unroll)
    m.scan_unroll = 1
    # "sp": standard parametrization; "mup": muP (Yang et al. 2022, lm/model/mup.py) relative to a
    # proxy of width mup_base_width (d_model) and head dim mup_base_head_dim (0: that width // num_heads)
    m.parametrization = "sp"
    m.mup_base_width = 0
    m.mup_base_head_dim = 0

    c.data = ml_collections.ConfigDict()
    d = c.data
    d.sources = ("stdlib",)  # "stdlib", files, directories, or "hf:NAME[:CONFIG]"
    d.text_field = "text"
    d.hf_split = "train"
    d.heldout_fraction = 0.02
    d.seq_len = 128
    d.seed = 0
    d.prepared_dir = ""  # build (once) and read tokenizer + shards here, shared by runs; "" = workdir
    # An `lm data prepare --output` directory: train on its recipe's mixture over tokens/<group>/
    # with its tokenizer, evaluate on heldout/<group>/. It replaces the fields in PREPARED_REPLACES.
    d.prepared_corpus = ""
    d.tokenizer_path = ""  # use this sentencepiece model instead of training one
    d.tokenizer_type = "bpe"
    d.tokenizer_byte_fallback = True
    d.tokenizer_split_digits = True
    d.tokenizer_max_sentences = 1_000_000
    d.prefetch = 2  # training batches fetched ahead by a background thread; 0 = none
    d.unique_tokens = 0  # > 0: train on this many unique tokens, repeated (lm.data.repeat)

    c.train = ml_collections.ConfigDict()
    t = c.train
    t.steps = 600
    t.batch_size = 16  # global sequences per optimizer step
    t.grad_accum = 1
    t.lr = 3e-3
    t.min_lr_ratio = 0.1
    t.warmup_steps = 50  # more than train.steps: the whole run warms up (a printed note says so)
    t.schedule = "cosine"
    t.decay_fraction = 0.2  # wsd: fraction of steps spent decaying
    t.weight_decay = 0.1
    t.decay_embeddings = False
    t.decay_norms = False
    t.b1 = 0.9
    t.b2 = 0.95
    t.eps = 1e-8
    t.clip_norm = 1.0
    t.z_loss = 0.0
    t.loss_chunk = 0  # > 0: head + loss this many positions at a time (no full f32 logits)
    t.seed = 0
    t.log_every = 1
    t.eval_every = 100
    t.eval_batches = 4
    t.checkpoint_every = 100
    t.keep_last = 2
    t.keep_every = 0  # also keep every M-th step's checkpoint; 0 keeps none extra
    t.async_checkpoint = True
    # the step reuses the old train state's buffers for the new one (off: both live at once)
    t.donate_state = True
    t.max_bad_steps = 5  # non-finite steps in a row, or spike rollbacks in all, before stopping
    t.checkpoint_fallback = True  # a corrupt newest checkpoint: warn and restore the one before
    t.spike_action = "log"  # none | log | skip (the update) | rollback: see lm/train/anomaly.py
    t.spike_window = 50
    t.spike_threshold = 8.0  # in robust standard deviations (1.4826 * MAD)
    t.spike_rel_floor = 0.02  # the deviation counts as at least this fraction of the median
    t.spike_min_history = 20
    t.rollback_skip_batches = 0
    t.skip_batches = ()  # data-stream batches never trained on: "START:END" (0-based, END excluded)
    t.plant_bad_batch_at = 0  # test hook: the batch step S would train on gets random targets

    c.mesh = ml_collections.ConfigDict()  # device mesh sizes; one may be -1 (the rest)
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    c.mesh.stage = 1
    # Across-node (DCN) / across-slice factors of each axis: the axis spans this many
    # processes' (or slices') groups of devices; mesh.<axis> is then the size within one.
    c.mesh.dcn = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1, stage=1))
    # Logical axis -> mesh axes (a tuple; () replicates). One place decides the strategy.
    c.mesh.rules = ml_collections.ConfigDict(dict(
        batch=("data", "fsdp"), seq=(), embed=("fsdp",), heads=("tensor",),
        kv_heads=("tensor",), head_dim=(), mlp=("tensor",), vocab=("tensor",), layers=("stage",)))

    c.pipeline = ml_collections.ConfigDict()  # used when mesh.stage > 1
    c.pipeline.microbatches = 0  # 0: one per stage
    c.pipeline.repeats = 1  # > 1: circular schedule with this many virtual stages per device
    c.pipeline.schedule = "auto"  # gpipe | circular | 1f1b (docs/parallelism.md); auto: by repeats

    c.sample = ml_collections.ConfigDict()
    s = c.sample
    s.max_new_tokens = 64
    s.temperature = 0.8
    s.top_k = 0
    s.top_p = 0.95
    s.seed = 0
    return c


def head_dim(model: ml_collections.ConfigDict) -> int:
    """The per-head width: `model.head_dim`, or d_model // num_heads when 0."""
    return model.head_dim or model.d_model // model.num_heads


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Check every field; raise ConfigError naming the first bad one and its fix."""
    _check_known_keys(cfg, default_config())
    m, d, t, s = cfg.model, cfg.data, cfg.train, cfg.sample
    check_positive(cfg, [
        "model.vocab_size", "model.d_model", "model.num_layers", "model.num_heads",
        "model.num_kv_heads", "model.d_ff", "model.max_seq_len", "model.rope_theta",
        "model.norm_eps", "model.init_std", "model.attention_block", "model.scan_unroll",
        "data.seq_len", "train.steps", "train.batch_size", "train.grad_accum", "train.lr",
        "train.log_every", "train.eval_every", "train.eval_batches", "train.checkpoint_every",
        "train.keep_last", "train.max_bad_steps", "sample.max_new_tokens", "train.spike_window",
        "train.spike_threshold", "train.spike_min_history",
    ])
    if m.head_dim == 0 and m.d_model % m.num_heads:
        fail("model.num_heads", f"{m.num_heads} heads do not divide d_model={m.d_model}; "
              "choose a divisor of d_model or set model.head_dim explicitly")
    if m.head_dim < 0:
        fail("model.head_dim", f"must be >= 0 (0 means d_model // num_heads), got {m.head_dim}")
    if head_dim(m) % 2:
        fail("model.head_dim", f"rotary embeddings need an even head_dim, got {head_dim(m)}")
    if m.mup_base_width < 0 or (m.parametrization == "mup" and m.mup_base_width == 0):
        fail("model.mup_base_width", f"must be the proxy model's d_model (> 0) under muP, got "
             f"{m.mup_base_width}; tune the learning rate at that width, then widen")
    if m.mup_base_head_dim < 0:
        fail("model.mup_base_head_dim", f"must be >= 0 (0: mup_base_width // num_heads), got {m.mup_base_head_dim}")
    if m.num_heads % m.num_kv_heads:
        fail("model.num_kv_heads", f"{m.num_kv_heads} kv heads do not divide num_heads="
              f"{m.num_heads}; use a divisor of num_heads (num_heads for MHA, 1 for MQA)")
    if d.seq_len > m.max_seq_len:
        fail("data.seq_len", f"{d.seq_len} is larger than model.max_seq_len={m.max_seq_len}; "
              "lower data.seq_len or raise model.max_seq_len")
    for name, value, choices in [
        ("model.param_dtype", m.param_dtype, DTYPES),
        ("model.compute_dtype", m.compute_dtype, DTYPES),
        ("model.remat", m.remat, REMAT_POLICIES),
        ("model.attention", m.attention, ATTENTION_KERNELS),
        ("model.parametrization", m.parametrization, PARAMETRIZATIONS),
        ("train.schedule", t.schedule, SCHEDULES),
        ("train.spike_action", t.spike_action, SPIKE_ACTIONS),
        ("data.tokenizer_type", d.tokenizer_type, TOKENIZER_TYPES),
        ("pipeline.schedule", cfg.pipeline.schedule, PIPELINE_SCHEDULES),
    ]:
        if value not in choices:
            fail(name, f"{value!r} is not one of {', '.join(choices)}")
    if not d.sources:
        fail("data.sources", "is empty; give 'stdlib', files, directories or 'hf:NAME'")
    if not 0.0 < d.heldout_fraction < 1.0:
        fail("data.heldout_fraction", f"must be in (0, 1), got {d.heldout_fraction}")
    if d.prepared_corpus:
        defaults = default_config().data
        for key in PREPARED_REPLACES:
            if d[key] != defaults[key]:
                fail(f"data.{key}", f"is {d[key]!r}, but data.prepared_corpus={d.prepared_corpus!r} supplies "
                      "the documents, held-out split and tokenizer; drop one of the two")
    if d.unique_tokens < 0 or (d.unique_tokens and d.prepared_corpus):
        fail("data.unique_tokens", f"must be >= 0, and 0 with data.prepared_corpus; got {d.unique_tokens}")
    if d.prefetch < 0:
        fail("data.prefetch", f"must be >= 0 (batches fetched ahead; 0 = none), got {d.prefetch}")
    if t.loss_chunk < 0 or (t.loss_chunk and d.seq_len % t.loss_chunk):
        fail("train.loss_chunk", f"must be 0 (off) or divide data.seq_len={d.seq_len}, "
              f"got {t.loss_chunk}")
    if t.batch_size % t.grad_accum:
        fail("train.grad_accum", f"{t.grad_accum} does not divide train.batch_size="
              f"{t.batch_size}; the batch is split into grad_accum microbatches")
    if t.warmup_steps < 0:
        fail("train.warmup_steps", f"must be >= 0, got {t.warmup_steps}")
    if t.spike_min_history > t.spike_window:
        fail("train.spike_min_history", f"{t.spike_min_history} is more than train.spike_window="
              f"{t.spike_window}, so no step would ever be judged")
    skip_ranges(t)
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        fail("train.min_lr_ratio", f"must be in [0, 1], got {t.min_lr_ratio}")
    if not 0.0 < t.decay_fraction <= 1.0:
        fail("train.decay_fraction", f"must be in (0, 1], got {t.decay_fraction}")
    for name in ("weight_decay", "z_loss", "clip_norm", "keep_every", "spike_rel_floor",
                 "rollback_skip_batches", "plant_bad_batch_at"):
        if t[name] < 0:
            fail(f"train.{name}", f"must be >= 0, got {t[name]}")
    validate_mesh(cfg)
    if s.temperature < 0:
        fail("sample.temperature", f"must be >= 0 (0 is greedy), got {s.temperature}")
    if s.top_k < 0:
        fail("sample.top_k", f"must be >= 0 (0 disables top-k), got {s.top_k}")
    if not 0.0 < s.top_p <= 1.0:
        fail("sample.top_p", f"must be in (0, 1], got {s.top_p}")
    return cfg


def _check_known_keys(cfg: ml_collections.ConfigDict, schema: ml_collections.ConfigDict,
                      prefix: str = "") -> None:
    for key in cfg.keys():
        path = f"{prefix}{key}"
        if key not in schema:
            near = difflib.get_close_matches(key, list(schema.keys()), n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else ""
            fail(path, f"unknown key{hint}")
        if isinstance(schema[key], ml_collections.ConfigDict):
            if not isinstance(cfg[key], ml_collections.ConfigDict):
                fail(path, "must be a section, not a value")
            _check_known_keys(cfg[key], schema[key], prefix=f"{path}.")


def merge(base: ml_collections.ConfigDict, overrides: dict[str, Any],
          prefix: str = "") -> ml_collections.ConfigDict:
    """Apply a nested dict of overrides onto `base`, rejecting unknown keys."""
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in base:
            near = difflib.get_close_matches(key, list(base.keys()), n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else ""
            fail(path, f"unknown key{hint}")
        if isinstance(base[key], ml_collections.ConfigDict):
            if not isinstance(value, (dict, ml_collections.ConfigDict)):
                fail(path, "is a section; override its fields instead")
            merge(base[key], dict(value), prefix=f"{path}.")
        else:
            base[key] = _coerce(path, base[key], value)
    return base


def _coerce(path: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        fail(path, f"expects true/false, got {value!r}")
    if isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            fail(path, f"expects a finite number, got {value!r}")
        return float(value)
    if isinstance(current, str) and isinstance(value, str):
        return value
    if isinstance(current, tuple) and isinstance(value, (tuple, list, str)):
        if isinstance(value, str):  # "a,b" from the command line; "" is the empty tuple
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(value)
    fail(path, f"expects a {type(current).__name__}, got {value!r} ({type(value).__name__})")


def parse_override(arg: str) -> tuple[list[str], Any]:
    """Parse `config.a.b=value` (the leading `--` already removed) into a key path and value."""
    if "=" not in arg:
        raise ConfigError(f"override {arg!r} has no '='; write --config.section.field=value")
    key, raw = arg.split("=", 1)
    parts = key.split(".")
    if parts[0] != "config" or len(parts) < 3:
        raise ConfigError(f"override {arg!r} must look like --config.section.field=value")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return parts[1:], lowered == "true"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare string
    return parts[1:], value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Defaults, then the experiment file's `get_config()`, then CLI overrides; validated."""
    cfg = default_config()
    if path is not None:
        merge(cfg, _to_dict(call_python_file(path, "get_config", kind="config")))
    return validate(apply_overrides(cfg, overrides))


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply `--config.section.field=value` strings to `cfg` in order (not validated)."""
    for arg in overrides:
        keys, value = parse_override(arg.removeprefix("--"))
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        merge(cfg, nested)
    return cfg


def _to_dict(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        return value.to_dict()
    if not isinstance(value, dict):
        raise ConfigError(f"get_config() must return a dict or ConfigDict, got {type(value).__name__}")
    return value


def to_json_dict(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """A plain, JSON-serialisable copy of the config (tuples become lists)."""
    return cfg.to_dict()


def from_json_dict(data: dict[str, Any]) -> ml_collections.ConfigDict:
    """Rebuild and validate a config saved with `to_json_dict`."""
    return validate(merge(default_config(), data))
