"""Pipeline schedules on one device: the same logits as the plain layer scan, the bubble
the formula predicts, and clear errors for schedules that cannot work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.config import ConfigError, default_config
from lm.parallel.pipeline import Pipeline, PipelineError, measured_bubble_fraction
from lm.parallel.setup import parallelism_from_config
from tests.helpers import make_model, random_tokens, tiny_model_config


@pytest.fixture(scope="module")
def model_and_batch():
    model = make_model(tiny_model_config(num_layers=4))
    tokens = random_tokens((8, 12), 64)
    positions = jnp.broadcast_to(jnp.arange(12), (8, 12))
    segments = jnp.ones((8, 12), jnp.int32).at[::3, 7:].set(2)  # packed rows
    return model, (tokens, positions, segments)


@pytest.mark.parametrize("pipeline", [Pipeline(4, 2), Pipeline(2, 8), Pipeline(2, 2, repeats=2)],
                         ids=["gpipe-4x2", "gpipe-2x8", "circular-2x2x2"])
def test_pipelined_logits_equal_the_layer_scan(model_and_batch, pipeline):
    model, batch = model_and_batch
    reference = jax.jit(lambda: model(*batch))()
    pipelined = jax.jit(lambda: model(*batch, pipeline))()
    np.testing.assert_allclose(pipelined, reference, rtol=1e-5, atol=1e-5)


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
