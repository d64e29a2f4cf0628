"""Sweep configs: validation names the bad field, and each kind expands into the right runs
(counts, names, steps from D, D from C, budgets)."""

from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.scaling.counts import train_flops_per_token
from lm.sweep.grid import expand, load_sweep, parse_sweep

SWEEPS = Path(__file__).resolve().parents[1] / "experiments" / "sweeps"
BASE = {"model": {"vocab_size": 1024, "max_seq_len": 128},
        "train": {"batch_size": 16, "warmup_steps": 5}}
FAMILY = {"head_dim": 32, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 32}
TOKENS_PER_STEP = 16 * 128


def sweep(**fields):
    raw = {"base": BASE, "n_kind": "non_embedding", "family": FAMILY, **fields}
    return parse_sweep({k: v for k, v in raw.items() if v is not None})


def test_kind_n_trains_each_size_on_the_same_tokens():
    specs = expand(sweep(kind="n", model_sizes=[27e3, 95e3, 332e3], tokens=1e6))
    assert [s.name for s in specs] == ["d32-L2", "d64-L2", "d96-L3"]
    assert {s.config().train.steps for s in specs} == {489}  # ceil(1e6 / 2048)
    assert {s.tokens for s in specs} == {489 * TOKENS_PER_STEP}
    assert [s.budget for s in specs] == [None] * 3
    assert [s.n_non_embedding for s in specs] == [26_784, 94_528, 332_448]


def test_kind_d_trains_one_model_on_each_token_count():
    specs = expand(sweep(kind="d", model_sizes=[95e3], tokens=[2e5, 4e5, 1e6]))
    assert [s.name for s in specs] == ["D2e5", "D4e5", "D1e6"]
    assert [s.config().train.steps for s in specs] == [98, 196, 489]
    assert len({(s.config().model.d_model, s.config().model.num_layers) for s in specs}) == 1


def test_kind_isoflop_derives_tokens_from_the_budget():
    specs = expand(sweep(kind="isoflop", flops="6n", budgets=[1e12, 3e12],
                         model_sizes=[[27e3, 95e3], [95e3, 332e3]]))
    assert [s.name for s in specs] == ["C1e12-d32-L2", "C1e12-d64-L2", "C3e12-d64-L2", "C3e12-d96-L3"]
    assert [s.budget for s in specs] == [1e12, 1e12, 3e12, 3e12]
    for s in specs:  # D = C / (6 N), rounded up to whole steps
        assert s.budget <= s.flops_6n < s.budget + 6 * s.n_non_embedding * TOKENS_PER_STEP
        assert s.config().train.steps == -(-s.budget // (6 * s.n_non_embedding * TOKENS_PER_STEP))


def test_isoflop_with_exact_flops_and_one_size_list_for_every_budget():
    specs = expand(sweep(kind="isoflop", flops="exact", budgets=[1e12, 2e12], model_sizes=[27e3, 95e3]))
    assert len(specs) == 4
    for s in specs:
        per_step = train_flops_per_token(s.config().model, 128) * TOKENS_PER_STEP
        assert s.budget <= s.flops_exact < s.budget + per_step


def test_kind_approach1_is_sizes_times_cosine_lengths():
    specs = expand(sweep(kind="approach1", model_sizes=[27e3, 95e3], tokens=[1e5, 3e5, 1e6]))
    assert len(specs) == 6 and specs[0].name == "d32-L2-D1e5" and specs[-1].name == "d64-L2-D1e6"
    for s in specs:
        cfg = s.config()
        assert cfg.train.schedule == "cosine"
        assert s.tokens == cfg.train.steps * TOKENS_PER_STEP


def test_total_n_kind_plans_total_parameters():
    specs = expand(sweep(kind="n", n_kind="total", model_sizes=[2.3e5], tokens=1e6))
    assert abs(specs[0].n_total / 2.3e5 - 1) <= 0.1
    assert specs[0].flops_6n == 6 * specs[0].n_total * specs[0].tokens


def test_overrides_and_prepared_dir_reach_every_run():
    specs = expand(sweep(kind="n", model_sizes=[27e3, 95e3], tokens=1e5),
                   ["--config.train.lr=0.02"], prepared_dir="/data/x")
    for s in specs:
        assert s.config().train.lr == 0.02 and s.config().data.prepared_dir == "/data/x"


def test_a_base_path_is_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "b.py").write_text(
        "def get_config():\n    return {'model': {'vocab_size': 700}, 'train': {'warmup_steps': 3}}\n")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "s.py").write_text(
        "def get_sweep():\n    return {'base': '../configs/b.py', 'kind': 'n', 'n_kind': 'non_embedding',\n"
        "            'model_sizes': [95e3], 'tokens': 1e5,\n"
        "            'family': {'head_dim': 32, 'min_aspect': 16, 'ffn_multiple': 32}}\n")
    spec, = expand(load_sweep(tmp_path / "sweeps" / "s.py"))
    assert spec.config().model.vocab_size == 700


@pytest.mark.parametrize("fields,message", [
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, budget=[1]),
     r"sweep field 'budget': unknown key; did you mean 'budgets'"),
    (dict(kind="m", model_sizes=[1e5], tokens=1e6), r"'kind': 'm' is not one of n, d, isoflop, approach1"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, flops="6n"), r"'flops': is not used by kind 'n'"),
    (dict(kind="isoflop", model_sizes=[1e5], flops="6n"), r"'budgets': is required for kind 'isoflop'"),
    (dict(kind="n", model_sizes=[1e5], tokens=[1e6, 2e6]), r"'tokens': kind 'n' trains every size on one"),
    (dict(kind="d", model_sizes=[1e5, 2e5], tokens=[1e6]), r"'model_sizes': kind 'd' trains one model size"),
    (dict(kind="n", model_sizes=[1e5, -3], tokens=1e6), r"'model_sizes': -3 is not a positive number"),
    (dict(kind="n", model_sizes=[], tokens=1e6), r"'model_sizes': is empty"),
    (dict(kind="isoflop", model_sizes=[[1e5]], budgets=[1e12, 2e12], flops="6n"),
     r"'model_sizes': has 1 lists for 2 budgets"),
    (dict(kind="isoflop", model_sizes=[1e5], budgets=[1e12], flops="8n"), r"'flops': '8n' is not one of"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, n_kind="all"), r"'n_kind': 'all' is not one of"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, n_tolerance=2), r"'n_tolerance': must be a fraction"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, family={"head_dims": 32}),
     r"'family.head_dims': unknown key; did you mean 'family.head_dim'"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, family={"head_dim": 33}), r"'family.head_dim': .*even"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, base={"model": {"d_modle": 3}}),
     r"sweep field 'base': config field 'model.d_modle': unknown key; did you mean 'model.d_model'"),
    (dict(kind="n", model_sizes=[1e5], tokens=1e6, base="nope.py"), r"'base': nope.py does not exist"),
    (dict(kind="n", tokens=1e6, model_sizes=None), r"'model_sizes': is required"),
])
def test_bad_sweep_fields_are_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        sweep(**fields)


def test_run_configs_are_validated_and_name_the_run():
    with pytest.raises(ConfigError, match=r"run d32-L2: config field 'train.eval_every': must be "
                                          r"positive, got 0"):
        expand(sweep(kind="n", model_sizes=[27e3], tokens=4096), ["--config.train.eval_every=0"])


def test_two_targets_planning_the_same_run_are_refused():
    with pytest.raises(ConfigError, match=r"both plan run d64-L2"):
        expand(sweep(kind="n", model_sizes=[94e3, 96e3], tokens=1e6))


def test_overriding_a_planned_field_is_refused():
    with pytest.raises(ConfigError, match=r"'model.d_model' is set by the sweep"):
        expand(sweep(kind="n", model_sizes=[27e3], tokens=1e6), ["--config.model.d_model=64"])
    with pytest.raises(ConfigError, match=r"'train.schedule' is set by the sweep"):
        expand(sweep(kind="approach1", model_sizes=[27e3], tokens=[1e6]), ["--config.train.schedule=wsd"])


def test_a_sweep_file_error_names_the_file(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def get_sweep():\n    return {'kind': 'n'}\n")
    with pytest.raises(ConfigError, match=r"bad.py: sweep field 'base': is required"):
        load_sweep(path)
    path.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_sweep"):
        load_sweep(path)


@pytest.mark.parametrize("name,kind,runs", [
    ("km_n", "n", 5), ("km_d", "d", 6), ("isoflop", "isoflop", 20),
    ("chinchilla_approach1", "approach1", 20), ("isoflop_cpu", "isoflop", 15), ("tiny_ci", "isoflop", 4),
    ("tiny_tune_ci", "isoflop", 4)])
def test_the_shipped_sweeps_plan(name, kind, runs):
    s = load_sweep(SWEEPS / f"{name}.py")
    specs = expand(s)
    assert s.kind == kind and len(specs) == runs
    assert len({spec.name for spec in specs}) == runs
