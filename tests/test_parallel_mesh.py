"""The mesh and the logical rules, on one device (fast; no simulated devices)."""

import jax
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P

from lm.parallel.sharding import logical_to_spec
from lm.parallel.mesh import MESH_AXES, make_mesh, resolve_axis_sizes
from lm.model.sharded_init import abstract_model
from lm.parallel.rules import DEFAULT_RULES, batch_sharding, check_batch_divisible, divisible_spec, \
    param_shardings
from tests.helpers import tiny_model_config


def test_minus_one_fills_the_remaining_devices():
    assert resolve_axis_sizes({"data": -1}, 8) == (8, 1, 1, 1)
    assert resolve_axis_sizes({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2, 1)
    assert resolve_axis_sizes({"fsdp": 8}, 8) == (1, 8, 1, 1)
    assert resolve_axis_sizes({}, 1) == (1, 1, 1, 1)


def test_make_mesh_has_the_fixed_axes_all_auto():
    mesh = make_mesh({"fsdp": -1})
    assert mesh.axis_names == MESH_AXES
    assert dict(mesh.shape) == {"data": 1, "fsdp": jax.device_count(), "tensor": 1, "stage": 1}
    assert all(t == AxisType.Auto for t in mesh.axis_types)


@pytest.mark.parametrize("sizes, devices, fragment", [
    ({"data": 3}, 8, "multiply to 3, but there are 8 devices"),
    ({"data": 3, "fsdp": -1}, 8, "do not divide the 8 devices"),
    ({"data": -1, "fsdp": -1}, 8, "at most one axis may be -1"),
    ({"data": 0}, 8, "sizes must be positive"),
    ({"model": 2}, 8, "unknown mesh axes ['model']"),
])
def test_bad_sizes_name_the_sizes_and_device_count(sizes, devices, fragment):
    with pytest.raises(ValueError) as info:
        resolve_axis_sizes(sizes, devices)
    assert fragment in str(info.value)
    if "model" not in sizes:
        assert "data=" in str(info.value) and "stage=" in str(info.value)


def test_make_mesh_rejects_sizes_that_do_not_match_the_devices():
    with pytest.raises(ValueError, match=f"multiply to {2 * jax.device_count()}"):
        make_mesh({"data": 2 * jax.device_count()})


def test_default_rules_give_the_intended_specs_for_every_parameter():
    model = abstract_model(tiny_model_config(d_model=32, vocab_size=64))
    specs = jax.tree.map(lambda s: s.spec, param_shardings(model, make_mesh({})))
    attn, mlp = specs["blocks"]["attn"], specs["blocks"]["mlp"]
    assert attn["wq"] == P("stage", "fsdp", "tensor", None)
    assert attn["wk"] == attn["wv"] == P("stage", "fsdp", "tensor", None)
    assert attn["wo"] == P("stage", "tensor", None, "fsdp")
    assert mlp["w_gate"] == mlp["w_up"] == P("stage", "fsdp", "tensor")
    assert mlp["w_down"] == P("stage", "tensor", "fsdp")
    assert specs["blocks"]["attn_norm"]["scale"] == P("stage", "fsdp")
    assert specs["embed"] == P("tensor", "fsdp")
    assert specs["head"] == P("fsdp", "tensor")
    assert specs["final_norm"]["scale"] == P("fsdp")
    assert len(jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))) == 12
    # the same as the raw logical_to_spec of each parameter's names (all dims divide here)
    assert logical_to_spec(("layers", "embed", "kv_heads", "head_dim"), DEFAULT_RULES) == attn["wk"]
    assert logical_to_spec(("batch", "seq"), DEFAULT_RULES) == P(("data", "fsdp"), None)
    assert batch_sharding(make_mesh({})).spec == P(("data", "fsdp"), None)


def test_indivisible_dimensions_are_replicated():
    mesh = AbstractMesh((1, 4, 2, 1), MESH_AXES)
    names = ("vocab", "embed")
    assert divisible_spec((64, 32), names, mesh, DEFAULT_RULES) == P("tensor", "fsdp")
    assert divisible_spec((61, 32), names, mesh, DEFAULT_RULES) == P(None, "fsdp")
    assert divisible_spec((64, 30), names, mesh, DEFAULT_RULES) == P("tensor", None)
    batch_mesh = AbstractMesh((2, 4, 1, 1), MESH_AXES)
    assert divisible_spec((12, 5), ("batch", "seq"), batch_mesh, DEFAULT_RULES) == P(None, None)
    assert divisible_spec((16, 5), ("batch", "seq"), batch_mesh, DEFAULT_RULES) == P(("data", "fsdp"), None)
    check_batch_divisible(16, batch_mesh)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8-way"):
        check_batch_divisible(12, batch_mesh)
