"""Checkpoints you can trust: checksum manifests, falling back past damaged checkpoints
(moved aside so they are never picked again), and a full disk during a save."""

import errno
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lm.train import checkpoint as checkpoint_lib
from lm.train.checkpoint import CheckpointError, Checkpointer
from lm.train.checkpoint_verify import MANIFEST, verify_manifest


def state_at(step: int):
    # "w" is big enough (4 KiB) to be stored out of line, in its own chunk of an OCDBT data file.
    return {"step": jnp.asarray(step, jnp.int32),
            "params": {"w": jax.random.normal(jax.random.key(step), (32, 32)), "b": jnp.ones(3) * step},
            "opt_state": (jnp.zeros(()), {"mu": jnp.full((2, 3), float(step))})}


ABSTRACT = jax.eval_shape(lambda: state_at(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Steps 1, 2, 3 saved asynchronously (the manifests are written in the background)."""
    directory = tmp_path_factory.mktemp("saved") / "ckpt"
    ckpt = Checkpointer(directory, keep_last=3)
    for step in (1, 2, 3):
        ckpt.save(step, state_at(step), {"iterator": {"next_index": step * 8}}, {"note": step})
    ckpt.close()
    return directory


@pytest.fixture
def ckpt_dir(saved, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(saved, directory)
    return directory


def open_ckpt(directory, warnings, **kwargs):
    return Checkpointer(directory, keep_last=kwargs.pop("keep_last", 3), warn=warnings.append, **kwargs)


def assert_is_step(restored, step):
    assert restored.step == step
    jax.tree.map(np.testing.assert_array_equal, restored.state, state_at(step))
    assert restored.data == {"iterator": {"next_index": step * 8}} and restored.meta == {"note": step}


def data_file(step_dir):
    """The largest file of the train state: the chunk holding "w"."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
        return f"is truncated ({len(data) // 2} of {len(data)} bytes)"
    if how == "deleted":
        path.unlink()
        return "is missing"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    return "does not match its checksum"


def test_every_finished_save_gets_a_manifest(saved, tmp_path):
    for step in (1, 2, 3):
        assert verify_manifest(saved / str(step))
    ckpt = Checkpointer(tmp_path / "sync", keep_last=2, async_save=False)
    ckpt.save(5, state_at(5), {}, {})
    assert verify_manifest(tmp_path / "sync" / "5")  # written before a synchronous save returns
    ckpt.close()


@pytest.mark.parametrize("how", ["truncated", "deleted", "flipped"])
def test_a_damaged_newest_checkpoint_falls_back_and_is_moved_aside(ckpt_dir, how):
    bad = data_file(ckpt_dir / "3")
    what = damage(bad, how)
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert ckpt.latest_step() == 3  # orbax alone would pick it (and, flipped, restore it silently)
    assert_is_step(ckpt.restore_latest(ABSTRACT), 2)
    name = bad.relative_to(ckpt_dir / "3")
    assert warnings == [f"checkpoint {ckpt_dir}/3 is corrupt: {name} {what}; moved it to "
                        f"{ckpt_dir}/corrupt/3, falling back to step 2"]
    assert ckpt.all_steps() == [1, 2] and (ckpt_dir / "corrupt" / "3" / "state").is_dir()
    ckpt.close()
    warnings.clear()  # the next launch does not see it again
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert ckpt.latest_step() == 2
    assert_is_step(ckpt.restore_latest(ABSTRACT), 2)
    assert warnings == []
    ckpt.close()


def test_with_fallback_off_a_damaged_checkpoint_is_an_error_naming_the_file(ckpt_dir):
    bad = data_file(ckpt_dir / "3")
    damage(bad, "truncated")
    ckpt = open_ckpt(ckpt_dir, [])
    with pytest.raises(CheckpointError) as info:
        ckpt.restore_latest(ABSTRACT, fallback=False)
    assert str(info.value).startswith(f"checkpoint {ckpt_dir}/3 is corrupt: "
                                      f"{bad.relative_to(ckpt_dir / '3')} is truncated")
    assert "\n" not in str(info.value)
    assert ckpt.all_steps() == [1, 2, 3]  # left where it is
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt_dir}/3 is corrupt: "):
        ckpt.restore(3, ABSTRACT)
    ckpt.close()


def test_after_falling_back_keep_last_keeps_the_good_steps(ckpt_dir):
    damage(data_file(ckpt_dir / "3"), "flipped")
    ckpt = open_ckpt(ckpt_dir, [], keep_last=2)
    assert ckpt.restore_latest(ABSTRACT).step == 2
    for step in (3, 4):  # training goes on from step 2
        ckpt.save(step, state_at(step), {"iterator": {"next_index": step * 8}}, {"note": step})
    ckpt.close()
    damage(data_file(ckpt_dir / "4"), "deleted")
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings, keep_last=2)
    assert_is_step(ckpt.restore_latest(ABSTRACT), 3)
    assert sorted(os.listdir(ckpt_dir / "corrupt")) == ["3", "4"]
    ckpt.save(4, state_at(4), {}, {})
    ckpt.close()
    assert sorted(os.listdir(ckpt_dir)) == ["3", "4", "corrupt"]


def test_all_checkpoints_damaged_is_an_error_and_the_rerun_starts_afresh(ckpt_dir):
    reasons = {step: damage(data_file(ckpt_dir / str(step)), "deleted") for step in (1, 2, 3)}
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    with pytest.raises(CheckpointError) as info:
        ckpt.restore_latest(ABSTRACT)
    message = str(info.value)
    assert message.startswith(f"no usable checkpoint in {ckpt_dir}: every one was corrupt (step 3: ")
    assert message.endswith(f"they were moved to {ckpt_dir}/corrupt, so rerunning starts from scratch")
    assert all(f"step {step}: " in message for step in reasons)
    assert len(warnings) == 3 and warnings[-1].endswith("no earlier checkpoint is left")
    ckpt.close()
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert ckpt.latest_step() is None and ckpt.restore_latest(ABSTRACT) is None
    ckpt.close()


def test_a_checkpoint_without_manifest_is_restored_with_a_note(ckpt_dir):
    (ckpt_dir / "3" / MANIFEST).unlink()
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    restored = ckpt.restore_latest(ABSTRACT)
    assert_is_step(restored, 3)
    assert not restored.verified
    assert warnings == [f"checkpoint {ckpt_dir}/3 has no checksum manifest (saved by an older "
                        f"version, or the run stopped just after saving it); restored it unverified"]
    ckpt.close()


def test_an_unverified_checkpoint_orbax_cannot_read_falls_back(ckpt_dir):
    (ckpt_dir / "3" / MANIFEST).unlink()
    damage(ckpt_dir / "3" / "state" / "_METADATA", "truncated")
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert_is_step(ckpt.restore_latest(ABSTRACT), 2)
    assert len(warnings) == 1 and warnings[0].startswith(
        f"checkpoint {ckpt_dir}/3 is corrupt: orbax could not read it (")
    assert warnings[0].endswith(f"); moved it to {ckpt_dir}/corrupt/3, falling back to step 2")
    ckpt.close()


def test_an_unreadable_manifest_is_damage(ckpt_dir):
    (ckpt_dir / "3" / MANIFEST).write_text("{not json")
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert ckpt.restore_latest(ABSTRACT).step == 2
    assert warnings[0].startswith(f"checkpoint {ckpt_dir}/3 is corrupt: its checksum manifest "
                                  f"{MANIFEST} is unreadable (")
    ckpt.close()


def test_an_intact_checkpoint_of_another_model_is_an_error_and_stays(ckpt_dir):
    wrong = jax.eval_shape(lambda: {**state_at(0), "params": {"w": jnp.zeros((8, 8)), "b": jnp.ones(3)}})
    ckpt = open_ckpt(ckpt_dir, [])
    with pytest.raises(CheckpointError) as info:
        ckpt.restore_latest(wrong)
    assert str(info.value) == (f"checkpoint {ckpt_dir}/3 does not match this run's model and optimizer: "
                               f"params.w is (32, 32) in the checkpoint but (8, 8) in this run")
    assert ckpt.all_steps() == [1, 2, 3] and not (ckpt_dir / "corrupt").exists()
    ckpt.close()


def _disk_full_in_json_writes(monkeypatch, error):
    async def no_space(self, x, directory):
        raise error
    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", no_space)


TENSORSTORE_ENOSPC = ValueError(  # what tensorstore raises (seen on a full tmpfs)
    'RESOURCE_EXHAUSTED: Error writing "w/0.0" in OCDBT database at local file '
    '"/x/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": '
    'Failed to write 210047 bytes to file 14: '
    "No space left on device [os_error_code='28']")


@pytest.mark.parametrize("async_save, error", [
    (False, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))), (True, TENSORSTORE_ENOSPC)])
def test_a_full_disk_fails_the_save_and_keeps_the_previous_checkpoint(ckpt_dir, monkeypatch,
                                                                      async_save, error):
    ckpt = open_ckpt(ckpt_dir, [], async_save=async_save)
    _disk_full_in_json_writes(monkeypatch, error)
    with pytest.raises(CheckpointError) as info:
        ckpt.save(4, state_at(4), {"iterator": {"next_index": 32}}, {"note": 4})
        ckpt.wait()  # an asynchronous save fails in the background: wait (or save, close) reports it
    assert str(info.value) == (
        f"the disk is full: could not save checkpoint step 4 in {ckpt_dir}; the partial save was "
        f"removed and step 3 is still the latest checkpoint; free space and rerun to resume")
    assert sorted(os.listdir(ckpt_dir)) == ["1", "2", "3"]  # no 4.orbax-checkpoint-tmp left
    monkeypatch.undo()
    assert_is_step(ckpt.restore_latest(ABSTRACT), 3)
    ckpt.save(4, state_at(4), {"iterator": {"next_index": 32}}, {"note": 4})  # space again
    ckpt.close()
    warnings = []
    ckpt = open_ckpt(ckpt_dir, warnings)
    assert_is_step(ckpt.restore_latest(ABSTRACT), 4)
    assert warnings == []
    ckpt.close()


def test_a_full_disk_for_the_manifest_leaves_an_unverified_checkpoint(tmp_path, monkeypatch):
    def no_space(step_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint_lib, "write_manifest", no_space)
    warnings = []
    ckpt = open_ckpt(tmp_path / "ckpt", warnings)
    ckpt.save(1, state_at(1), {"iterator": {"next_index": 8}}, {"note": 1})
    ckpt.close()
    assert warnings == [f"could not write the checksum manifest of checkpoint {tmp_path}/ckpt/1 (the "
                        f"disk is full); the checkpoint is complete and will be restored unverified"]
    monkeypatch.undo()
    ckpt = open_ckpt(tmp_path / "ckpt", warnings)
    restored = ckpt.restore_latest(ABSTRACT)
    assert_is_step(restored, 1)
    assert not restored.verified
    ckpt.close()
