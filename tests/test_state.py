"""lm.train.state: the layout, fresh state and restore path every command shares."""

import jax
import numpy as np
import pytest

from lm.config import default_config, to_json_dict
from lm.files import write_json_atomic
from lm.parallel.mesh import make_mesh
from lm.parallel.rules import DEFAULT_RULES
from lm.train.checkpoint import Checkpointer
from lm.train.state import (abstract_params, build_model, init_state, read_run_config, restore_params,
                            state_layout)
from tests.helpers import tiny_model_config


def small_config():
    cfg = default_config()
    cfg.model = tiny_model_config()
    cfg.data.seq_len = cfg.model.max_seq_len
    return cfg


def test_the_fresh_state_matches_its_layout_and_build_model():
    cfg = small_config()
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1, "stage": 1})
    layout = state_layout(cfg, mesh, DEFAULT_RULES)
    state = init_state(cfg, layout, mesh, DEFAULT_RULES)
    shapes = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    assert shapes == jax.tree.map(lambda a: (a.shape, a.dtype), layout.abstract_state)
    _, params = build_model(cfg.model, cfg.train.seed)
    for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(state["step"]) == 0


def test_restore_params_reads_the_newest_checkpoint_without_a_random_model(tmp_path, monkeypatch):
    cfg = small_config()
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1, "stage": 1})
    layout = state_layout(cfg, mesh, DEFAULT_RULES)
    state = init_state(cfg, layout, mesh, DEFAULT_RULES)
    state["params"] = jax.tree.map(lambda a: a + 1.0, state["params"])
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep_last=2, async_save=False)
    checkpointer.save(7, state, {"iterator": {"next_index": 0}}, {})
    checkpointer.close()
    write_json_atomic(to_json_dict(cfg), tmp_path / "config.json")

    import lm.train.state as state_module
    monkeypatch.setattr(state_module, "build_model", lambda *a: pytest.fail("built a random model"))
    graphdef, params, step = restore_params(tmp_path, read_run_config(tmp_path))
    assert step == 7
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(params) == jax.tree.structure(abstract_params(cfg.model)[1])


def test_a_workdir_without_config_or_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'config.json'} does not exist; is {tmp_path} a "
                                                 "run's workdir"):
        read_run_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path / 'checkpoints'}; train first"):
        restore_params(tmp_path, small_config())
