"""Checkpoints: round trip, retention, incomplete saves ignored, corruption named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.train.checkpoint import CheckpointError, Checkpointer


def state_at(step: int):
    return {"step": jnp.asarray(step, jnp.int32),
            "params": {"w": jnp.arange(6.0).reshape(2, 3) + step, "b": jnp.ones(3)},
            "opt_state": (jnp.zeros(()), {"mu": jnp.full((2, 3), float(step))})}


def test_round_trip_with_data_state_and_meta(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2)
    ckpt.save(7, state_at(7), {"iterator": {"next_index": 56}}, {"note": "x"})
    ckpt.close()
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2)
    assert ckpt.latest_step() == 7
    state, data, meta = ckpt.restore(7, jax.eval_shape(lambda: state_at(0)))
    jax.tree.map(np.testing.assert_array_equal, state, state_at(7))
    assert data == {"iterator": {"next_index": 56}} and meta == {"note": "x"}
    ckpt.close()


def test_keep_last_n_plus_every_m(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2, keep_every=4, async_save=False)
    for step in range(1, 11):
        ckpt.save(step, state_at(step), {}, {})
    ckpt.close()
    assert Checkpointer(tmp_path / "ckpt", keep_last=2).all_steps() == [4, 8, 9, 10]


def test_an_unfinished_save_is_never_the_latest(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=3)
    ckpt.save(5, state_at(5), {}, {})
    ckpt.close()
    # What a crash in the middle of writing step 6 leaves: a temporary directory.
    partial = tmp_path / "ckpt" / "6.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\0" * 10)
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=3)
    assert ckpt.latest_step() == 5
    ckpt.restore(5, jax.eval_shape(lambda: state_at(0)))
    ckpt.close()


def test_corrupt_checkpoint_error_names_the_path(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2)
    ckpt.save(3, state_at(3), {}, {})
    ckpt.close()
    for path in (tmp_path / "ckpt" / "3" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"corrupted")
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2)
    with pytest.raises(CheckpointError, match=r"checkpoint .*ckpt/3 is corrupt"):
        ckpt.restore(3, jax.eval_shape(lambda: state_at(0)))
    with pytest.raises(CheckpointError, match="no complete checkpoint for step 4"):
        ckpt.restore(4, jax.eval_shape(lambda: state_at(0)))
    ckpt.close()


def test_mismatched_structure_is_named(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=2)
    ckpt.save(1, state_at(1), {}, {})
    ckpt.wait()
    wrong = jax.eval_shape(lambda: {**state_at(0), "params": {"w": jnp.zeros((5, 5)), "b": jnp.ones(3)}})
    with pytest.raises(CheckpointError, match="does not match this run"):
        ckpt.restore(1, wrong)
    ckpt.close()
