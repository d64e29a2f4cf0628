"""Config schema: defaults validate, presets load, bad fields are named with their fix."""

import pytest

from lm.config import ConfigError, default_config, from_json_dict, load_config, to_json_dict, validate


def test_defaults_and_presets_validate():
    validate(default_config())
    for preset in ("tiny", "small", "quickstart", "llama_1b", "llama_7b"):
        load_config(f"experiments/configs/{preset}.py")


def test_overrides_are_typed():
    cfg = load_config("experiments/configs/tiny.py", [
        "--config.train.steps=7", "--config.train.lr=1e-3", "--config.model.tie_embeddings=false",
        "--config.data.sources=['a.txt','b.jsonl']", "--config.model.compute_dtype=bfloat16",
        "--config.train.warmup_steps=0"])
    assert cfg.train.steps == 7 and cfg.train.lr == 1e-3
    assert cfg.model.tie_embeddings is False
    assert cfg.data.sources == ("a.txt", "b.jsonl")
    assert cfg.model.compute_dtype == "bfloat16"
    assert load_config(None, ["--config.train.lr=1"]).train.lr == 1.0  # int accepted for float


def test_sharding_rules_are_config_data():
    from lm.parallel.rules import rules_from_config
    cfg = load_config(None, ["--config.mesh.rules.embed=fsdp,tensor", "--config.mesh.rules.vocab=",
                             "--config.mesh.rules.batch=('data',)"])
    rules = rules_from_config(cfg.mesh.rules)
    assert rules["embed"] == ("fsdp", "tensor") and rules["vocab"] is None
    assert rules["batch"] == "data" and rules["layers"] == "stage"
    assert from_json_dict(to_json_dict(cfg)).mesh.rules.embed == ("fsdp", "tensor")


@pytest.mark.parametrize("override, field, hint", [
    ("--config.model.num_heads=5", "model.num_heads", "do not divide d_model"),
    ("--config.model.num_kv_heads=3", "model.num_kv_heads", "do not divide num_heads"),
    ("--config.train.steps=-1", "train.steps", "must be positive"),
    ("--config.data.seq_len=4096", "data.seq_len", "larger than model.max_seq_len"),
    ("--config.train.stepz=3", "train.stepz", "did you mean 'train.steps'"),
    ("--config.modle.d_model=3", "modle", "did you mean 'model'"),
    ("--config.model.remat=some", "model.remat", "not one of none, full, dots"),
    ("--config.train.steps=ten", "train.steps", "expects a int"),
    ("--config.train.grad_accum=3", "train.grad_accum", "does not divide train.batch_size"),
    ("--config.model.tie_embeddings=3", "model.tie_embeddings", "expects true/false"),
    ("--config.train.warmup_steps=-5", "train.warmup_steps", "must be >= 0, got -5"),
    ("--config.mesh.fsdp=0", "mesh.fsdp", "must be a positive size or -1"),
    ("--config.mesh.dcn.data=0", "mesh.dcn.data", "must be a positive factor"),
    ("--config.mesh.rules.embed=fsdp,model", "mesh.rules.embed", "must name distinct mesh axes"),
    ("--config.mesh.rules.batch=data,data", "mesh.rules.batch", "must name distinct mesh axes"),
    ("--config.pipeline.repeats=0", "pipeline.repeats", "must be >= 1"),
    ("--config.model.scan_unroll=0", "model.scan_unroll", "must be positive"),
    ("--config.train.loss_chunk=100", "train.loss_chunk", "divide data.seq_len=128"),
    ("--config.model.attention=flash", "model.attention", "not one of einsum, blockwise, xla, cudnn"),
    ("--config.model.attention_block=0", "model.attention_block", "must be positive"),
])
def test_bad_fields_are_named(override, field, hint):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert f"'{field}'" in message and hint in message


def test_unknown_key_in_an_experiment_file(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def get_config():\n    return {'model': {'layers': 3}}\n")
    with pytest.raises(ConfigError, match="'model.layers': unknown key"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.py")


def test_json_round_trip():
    cfg = load_config("experiments/configs/tiny.py")
    again = from_json_dict(to_json_dict(cfg))
    assert again == cfg
