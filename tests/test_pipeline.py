"""Pipeline schedules on one device: the same logits (and for 1F1B, gradients) as the plain
layer scan, the bubble the formula predicts, and clear errors for schedules that cannot work."""

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lm.config import ConfigError, default_config, load_config
from lm.parallel.pipeline import Pipeline, PipelineError, measured_bubble_fraction
from lm.parallel.setup import parallelism_from_config
from tests.helpers import make_model, random_tokens, tiny_model_config


@pytest.fixture(scope="module")
def model_and_batch():
    model = make_model(tiny_model_config(num_layers=4))
    tokens = random_tokens((8, 12), 61)  # the vocabulary: larger ids embed as NaN
    positions = jnp.broadcast_to(jnp.arange(12), (8, 12))
    segments = jnp.ones((8, 12), jnp.int32).at[::3, 7:].set(2)  # packed rows
    return model, (tokens, positions, segments)


@pytest.mark.parametrize("pipeline", [Pipeline(4, 2), Pipeline(2, 8), Pipeline(2, 2, repeats=2),
                                      Pipeline(4, 4, schedule="1f1b")],
                         ids=["gpipe-4x2", "gpipe-2x8", "circular-2x2x2", "1f1b-4x4"])
def test_pipelined_logits_equal_the_layer_scan(model_and_batch, pipeline):
    model, batch = model_and_batch
    reference = jax.jit(lambda: model(*batch))()
    pipelined = jax.jit(lambda: model(*batch, pipeline))()
    assert np.isfinite(reference).all()
    np.testing.assert_allclose(pipelined, reference, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def gradients(model_and_batch):
    """Gradients of a loss that weighs every logit differently, for a layer runner (or None)."""
    model, batch = model_and_batch
    graphdef, params = nnx.split(model)
    weights = jnp.linspace(-1.0, 1.0, 61)

    def loss(params, runner):
        return jnp.mean(nnx.merge(graphdef, params)(*batch, runner) * weights)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    reference = grad(params, None)
    return lambda runner: (grad(params, runner), reference)


def test_1f1b_gradients_equal_the_layer_scan(gradients):
    # M < S here; tests/test_parallel_equality.py covers M > 2S - 1 (the stash reused) sharded
    grads, reference = gradients(Pipeline(4, 2, schedule="1f1b"))
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize("stages, microbatches", [(2, 1), (2, 8), (4, 4), (4, 5), (4, 16)])
def test_1f1b_schedule_alternates_and_bounds_the_stash(stages, microbatches):
    p = Pipeline(stages, microbatches, schedule="1f1b")
    fwd, bwd = p.backward_slots()
    s, m = stages, microbatches
    assert fwd.shape == bwd.shape == (m + 2 * s - 2, s)
    assert (fwd[-(s - 1):] == -2).all() and (bwd[:s - 1] == -2).all()  # cool-down, warm-up
    assert (fwd[s - 1:m + s - 1] >= -1).all() and (bwd[s - 1:m + s - 1] >= -1).all()  # 1F + 1B
    when = lambda table, stage, mb: int(np.flatnonzero(table[:, stage] == mb)[0])
    for stage in range(s):
        assert list(fwd[:, stage][fwd[:, stage] >= 0]) == list(range(m))  # each once, in order
        assert list(bwd[:, stage][bwd[:, stage] >= 0]) == list(range(m))
        for mb in range(m):  # data dependencies, one iteration per hop
            assert when(bwd, stage, mb) >= when(fwd, stage, mb)
            if stage > 0:
                assert when(fwd, stage, mb) > when(fwd, stage - 1, mb)
            if stage < s - 1:
                assert when(bwd, stage, mb) > when(bwd, stage + 1, mb)
        in_flight = [np.sum(fwd[:t + 1, stage] >= 0) - np.sum(bwd[:t, stage] >= 0)
                     for t in range(len(fwd))]
        assert max(in_flight) == min(m, 2 * (s - 1 - stage) + 1) <= p.stash
    assert p.stash == min(m, 2 * s - 1)
    assert measured_bubble_fraction(p) == pytest.approx(p.bubble_fraction)
    assert p.bubble_fraction == pytest.approx((s - 1) / (m + s - 1))  # GPipe's


@pytest.mark.parametrize("stages, microbatches, repeats", [(2, 2, 1), (4, 4, 1), (4, 8, 1),
                                                           (4, 4, 2), (8, 16, 4), (3, 1, 1)])
def test_bubble_fraction_of_the_schedule_matches_the_formula(stages, microbatches, repeats):
    p = Pipeline(stages, microbatches, repeats)
    slots = p.slots()
    assert slots.shape == (repeats * microbatches + stages - 1, stages)
    # each stage works on every (microbatch, round) exactly once, in order
    for s in range(stages):
        busy = slots[:, s][slots[:, s] >= 0]
        assert list(busy) == list(np.tile(np.arange(microbatches), repeats))
    assert measured_bubble_fraction(p) == pytest.approx((stages - 1) / (repeats * microbatches + stages - 1))
    assert p.bubble_fraction == pytest.approx(measured_bubble_fraction(p))


def test_circular_schedule_cuts_the_bubble():
    assert Pipeline(4, 8, 1).bubble_fraction == pytest.approx(3 / 11)
    assert Pipeline(4, 8, 2).bubble_fraction == pytest.approx(3 / 19)


def test_impossible_schedules_are_named():
    with pytest.raises(PipelineError, match=r"model.num_layers=6 does not split into mesh.stage=4"):
        Pipeline(4, 4).check(num_layers=6, batch_rows=16)
    with pytest.raises(PipelineError, match=r"needs pipeline.microbatches >= mesh.stage"):
        Pipeline(4, 2, repeats=2).check(num_layers=8, batch_rows=16)
    with pytest.raises(PipelineError, match=r"schedule='1f1b' does not go with pipeline.repeats=2"):
        Pipeline(4, 4, repeats=2, schedule="1f1b")
    with pytest.raises(PipelineError, match=r"do not split into pipeline.microbatches=4"):
        Pipeline(2, 4).check(num_layers=4, batch_rows=12, batch_ways=2)
    Pipeline(2, 4).check(num_layers=4, batch_rows=16, batch_ways=2)


def test_config_errors_name_the_field():
    cfg = default_config()
    cfg.model.num_layers = 3
    cfg.mesh.update(dict(data=1, stage=1))
    cfg.pipeline.microbatches = 2
    assert parallelism_from_config(cfg).pipeline is None  # one stage: no pipeline
    cfg.mesh.rules.layers = ()
    cfg.mesh.stage = 1
    assert parallelism_from_config(cfg).rules["layers"] is None
    with pytest.raises(ConfigError, match="mesh axis sizes .* multiply to 2, but there are 1"):
        cfg.mesh.stage = 2
        parallelism_from_config(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["schedule=gpipe", "repeats=2"], "'gpipe' does not go with pipeline.repeats=2"),
    (["schedule=1f1b", "repeats=2"], "'1f1b' does not go with pipeline.repeats=2"),
    (["schedule=circular"], "'circular' does not go with pipeline.repeats=1"),
    (["schedule=pipedream"], "'pipedream' is not one of auto, gpipe, circular, 1f1b"),
])
def test_schedule_and_repeats_must_agree(overrides, message):
    with pytest.raises(ConfigError, match="config field 'pipeline.schedule': " + message) as err:
        load_config(None, [f"--config.pipeline.{o}" for o in overrides])
    assert "\n" not in str(err.value)


def test_auto_keeps_the_old_meaning_of_repeats():
    assert default_config().pipeline.schedule == "auto"
    assert Pipeline(2, 2, 2).schedule == "circular" and Pipeline(2, 2).schedule == "gpipe"


def test_the_model_is_handed_its_layer_runner():
    """Schedules live in lm/parallel: no module of lm/model imports one (the decoder gets a
    `runner` with a `run` method), and lm/parallel never imports lm.model."""
    root = Path(__file__).resolve().parents[1] / "lm"
    schedule_modules = {"lm.parallel.pipeline", "lm.parallel.schedules", "lm.parallel.one_f_one_b"}

    def imported(folder):
        for path in (root / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    yield node.module
                elif isinstance(node, ast.Import):
                    yield from (a.name for a in node.names)

    assert not schedule_modules & set(imported("model"))
    assert not any(name.startswith("lm.model") for name in imported("parallel"))
