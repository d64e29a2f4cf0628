"""The planner: shapes hit their target N within the tolerance and follow the family rule,
impossible targets name themselves, and steps, tokens and FLOPs follow their formulas."""

import math

import pytest

from lm.config import ConfigError, default_config, merge
from lm.scaling.counts import param_counts, train_flops_per_token
from lm.sweep.plan import (RunSpec, ShapeFamily, compact, config_overrides, format_table, run_spec,
                           shape_for_params, steps_for_tokens, tokens_for_budget)

GPU = ShapeFamily(head_dim=64, min_aspect=32, max_aspect=64, ffn_multiple=64)
TINY = ShapeFamily(head_dim=32, min_aspect=32, max_aspect=64, ffn_multiple=32)


def model(**fields):
    m = default_config().model
    m.update(fields)
    return m


def with_shape(m, shape):
    m = m.copy_and_resolve_references()
    m.update(shape.model_overrides())
    return m


@pytest.mark.parametrize("n_kind,target", [
    ("non_embedding", 3e6), ("non_embedding", 2e7), ("non_embedding", 1.5e8),
    ("non_embedding", 1e9), ("total", 5e7), ("total", 4e8), ("total", 7e9)])
def test_shapes_hit_their_target_and_follow_the_family(n_kind, target):
    base = model(vocab_size=32000)
    shape = shape_for_params(target, base, GPU, n_kind=n_kind, tolerance=0.1)
    counts = param_counts(with_shape(base, shape))
    n = counts.non_embedding if n_kind == "non_embedding" else counts.total
    assert abs(n / target - 1) <= 0.1
    assert shape.d_model % 64 == 0 and shape.num_heads * 64 == shape.d_model
    assert shape.num_kv_heads == shape.num_heads
    assert 32 <= shape.d_model / shape.num_layers <= 64
    assert shape.d_ff % 64 == 0 and abs(shape.d_ff - 8 / 3 * shape.d_model) <= 32


def test_the_nearest_shape_wins():
    base = model(vocab_size=1024)
    # The tiny family has 94,528 (d64, 2 layers) and 221,664 (d96, 2 layers) non-embedding
    # parameters and nothing in between.
    assert shape_for_params(95e3, base, TINY, n_kind="non_embedding", tolerance=0.1).d_model == 64
    shape = shape_for_params(210e3, base, TINY, n_kind="non_embedding", tolerance=0.1)
    assert (shape.d_model, shape.num_layers, shape.d_ff) == (96, 2, 256)
    assert param_counts(with_shape(base, shape)).non_embedding == 221_664


def test_a_target_between_shapes_names_itself_and_the_reachable_counts():
    with pytest.raises(ConfigError, match=r"target N=150,000 \(non_embedding\).*94,528 and 221,664"):
        shape_for_params(150e3, model(vocab_size=1024), TINY, n_kind="non_embedding", tolerance=0.1)


def test_a_target_below_the_smallest_shape_is_refused():
    with pytest.raises(ConfigError, match=r"target N=100 \(total\)"):
        shape_for_params(100, model(vocab_size=1024), TINY, n_kind="total", tolerance=0.1)


def test_the_total_count_includes_the_embeddings():
    base = model(vocab_size=32000, tie_embeddings=False)
    shape = shape_for_params(5e7, base, GPU, n_kind="total", tolerance=0.1)
    counts = param_counts(with_shape(base, shape))
    assert counts.total - counts.non_embedding == 2 * 32000 * shape.d_model


def test_steps_cover_the_tokens():
    assert steps_for_tokens(1000, batch_size=2, seq_len=100) == 5
    assert steps_for_tokens(1001, batch_size=2, seq_len=100) == 6
    assert steps_for_tokens(10, batch_size=2, seq_len=100) == 1


def test_tokens_for_a_budget():
    m = model(vocab_size=1024)
    counts = param_counts(m)
    assert tokens_for_budget(6e12, m, 128, flops="6n", n_kind="total") == pytest.approx(1e12 / counts.total)
    assert tokens_for_budget(6e12, m, 128, flops="6n", n_kind="non_embedding") == pytest.approx(
        1e12 / counts.non_embedding)
    assert tokens_for_budget(6e12, m, 128, flops="exact", n_kind="total") == pytest.approx(
        6e12 / train_flops_per_token(m, 128))
    with pytest.raises(ConfigError, match="flops '7n'"):
        tokens_for_budget(1e12, m, 128, flops="7n", n_kind="total")


def test_run_spec_counts_tokens_and_flops():
    cfg = merge(default_config(), {"model": {"vocab_size": 1024, "d_model": 64, "num_heads": 2,
                                             "num_kv_heads": 2, "num_layers": 2, "d_ff": 160},
                                   "train": {"steps": 30, "batch_size": 4, "warmup_steps": 5},
                                   "data": {"seq_len": 32}})
    spec = run_spec("x", cfg, n_kind="non_embedding", budget=1e12)
    counts = param_counts(cfg.model)
    assert spec.tokens == 30 * 4 * 32
    assert (spec.n_total, spec.n_non_embedding) == (counts.total, counts.non_embedding)
    assert spec.flops_6n == 6 * counts.non_embedding * spec.tokens
    assert spec.flops_exact == pytest.approx(train_flops_per_token(cfg.model, 32) * spec.tokens)
    assert spec.budget == 1e12
    assert spec.overrides == {"model": {"vocab_size": 1024, "d_model": 64, "num_heads": 2,
                                        "num_kv_heads": 2, "num_layers": 2, "d_ff": 160},
                              "data": {"seq_len": 32},
                              "train": {"steps": 30, "batch_size": 4, "warmup_steps": 5}}
    assert spec.config().to_dict() == cfg.to_dict()
    assert run_spec("x", cfg, n_kind="total").flops_6n == 6 * counts.total * spec.tokens


def test_config_overrides_of_the_defaults_are_empty():
    assert config_overrides(default_config()) == {}


def test_compact_names():
    assert [compact(x) for x in (300, 1e9, 2.5e13, 1.2345e6, 9.9999e9)] == [
        "300", "1e9", "2.5e13", "1.23e6", "1e10"]
    assert [compact(x) for x in (0, 16, 0.003, 0.0030551, 1.25e-4, 3e-5, -2e-6)] == [
        "0", "16", "0.003", "0.00306", "0.000125", "3e-5", "-2e-6"]


def test_the_table_lists_every_run():
    cfg = merge(default_config(), {"train": {"steps": 100}})
    specs = [run_spec("a", cfg, n_kind="total"), RunSpec(**{**vars(run_spec("b", cfg, n_kind="total")),
                                                            "budget": 3e12})]
    table = format_table(specs, n_kind="total").splitlines()
    assert table[0].split()[:3] == ["run", "budget", "layers"]
    assert table[2].split()[0] == "a" and table[3].split()[:2] == ["b", "3e+12"]
    assert table[-1].startswith("2 runs; N = total parameters")
    assert f"{specs[0].n_total:,}" in table[2] and math.isclose(
        float(table[2].split()[-1]), specs[0].flops_exact, rel_tol=1e-2)
