"""Sharded and pipelined training equals single-device training, on 8 simulated CPU devices.

The device count is fixed when jax starts, so the body runs in a subprocess with its own
XLA_FLAGS and prints JSON; the tests check it. One subprocess serves every test, also
across pytest-xdist workers (the first worker to need it runs it, the others read its file).
"""

import fcntl
import json
import os
import subprocess
import sys

import pytest

# name -> (mesh sizes, pipeline settings); B=16 rows, 8 layers
MESHES = {
    "data8": ({"data": 8}, {}),
    "fsdp8": ({"fsdp": 8}, {}),
    "d2f2t2": ({"data": 2, "fsdp": 2, "tensor": 2}, {}),
    "f2t2s2": ({"data": 1, "fsdp": 2, "tensor": 2, "stage": 2}, {}),  # 2 microbatches
    "s4_mb4": ({"data": 2, "stage": 4}, {"microbatches": 4}),
    "s4_mb8": ({"data": 2, "stage": 4}, {"microbatches": 8}),
    "s4_circular2": ({"data": 2, "stage": 4}, {"microbatches": 4, "repeats": 2}),
    # 1F1B: M > 2S - 1, so the stash of stage inputs is reused round the ring
    "s4_1f1b_mb8": ({"data": 2, "stage": 4}, {"microbatches": 8, "schedule": "1f1b"}),
    "f2t2s2_1f1b_mb4": ({"data": 1, "fsdp": 2, "tensor": 2, "stage": 2},
                        {"microbatches": 4, "schedule": "1f1b"}),
}
# muP (lm.model.mup) on meshes, against a muP single-device reference: width multiplier 2
MUP_MESHES = {
    "mup_d2f2t2": ({"data": 2, "fsdp": 2, "tensor": 2}, {}),
    "mup_f2t2s2_1f1b_mb4": ({"data": 1, "fsdp": 2, "tensor": 2, "stage": 2},
                            {"microbatches": 4, "schedule": "1f1b"}),
}

SCRIPT = r'''
import contextlib, json, sys
import jax, jax.numpy as jnp, numpy as np
from lm.config import default_config
from lm.parallel.sharding import use_mesh_rules
from lm.model.sharded_init import shard_params_init
from lm.parallel.rules import batch_sharding, train_state_shardings
from lm.parallel.setup import parallelism_from_config
from lm.train.state import build_model
from lm.train.optim import make_optimizer
from lm.train.step import batch_loss_sums, init_train_state, make_train_step

meshes, mup_meshes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert jax.device_count() == 8, jax.device_count()
cfg = default_config()
m = cfg.model
m.update(dict(vocab_size=64, d_model=32, num_layers=8, num_heads=4, num_kv_heads=2, d_ff=48,
              max_seq_len=64, param_dtype="float32", compute_dtype="float32"))
t = cfg.train
B, L, STEPS = 16, 16, 3
t.update(dict(steps=STEPS, warmup_steps=1, lr=1e-2, batch_size=B))
rng = np.random.default_rng(0)
batches = []
for _ in range(STEPS):
    tokens = rng.integers(0, m.vocab_size, (B, L + 1)).astype(np.int32)
    segments = np.ones((B, L), np.int32)
    segments[::3, L // 2:] = 2  # packed rows: attention must not cross the boundary
    batches.append({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                    "positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)).copy(),
                    "segment_ids": segments})

def per_device(tree):  # the largest number of bytes any device holds
    counts = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            counts[shard.device.id] = counts.get(shard.device.id, 0) + shard.data.nbytes
    return max(counts.values())

def run(spec):
    if spec is None:  # the reference: one device, no mesh, no pipeline
        graphdef, params = build_model(m, t.seed)
        optimizer = make_optimizer(t, params, m)
        state = jax.jit(lambda p: init_train_state(p, optimizer))(params)
        step = jax.jit(make_train_step(graphdef, optimizer, grad_accum=1, z_loss=0.0))
        nll = lambda p, b: batch_loss_sums(graphdef, p, b)["nll"]
        grad = jax.jit(jax.grad(nll))
        put, ctx, pipeline = (lambda b: b), contextlib.nullcontext(), None
    else:
        sizes, pipe = spec
        cfg.mesh.update(dict(dict(data=1, fsdp=1, tensor=1, stage=1), **sizes))
        cfg.pipeline.update({"microbatches": 0, "repeats": 1, "schedule": "auto", **pipe})
        layout = parallelism_from_config(cfg)
        mesh, rules, pipeline = layout.mesh, layout.rules, layout.pipeline
        graphdef, params, shardings = shard_params_init(m, t.seed, mesh, rules)
        optimizer = make_optimizer(t, params, m)
        state_sh = train_state_shardings(optimizer, params, shardings, mesh)
        state = jax.jit(lambda p: init_train_state(p, optimizer), out_shardings=state_sh)(params)
        bsh = batch_sharding(mesh, rules)
        step = jax.jit(make_train_step(graphdef, optimizer, grad_accum=1, z_loss=0.0,
                                       pipeline=pipeline),
                       in_shardings=(state_sh, bsh), out_shardings=(state_sh, None))
        nll = lambda p, b: batch_loss_sums(graphdef, p, b, pipeline)["nll"]
        grad = jax.jit(jax.grad(nll), in_shardings=(shardings, bsh), out_shardings=shardings)
        put, ctx = (lambda b: jax.device_put(b, bsh)), use_mesh_rules(mesh, rules)
    out = {"param_bytes": per_device(state["params"]), "state_bytes": per_device(state),
           "embed_bytes": per_device(state["params"]["embed"]),
           "pipeline": None if pipeline is None else [pipeline.stages, pipeline.microbatches,
                                                      pipeline.repeats, pipeline.schedule]}
    specs = {jax.tree_util.keystr(k): str(v.sharding.spec)
             for k, v in jax.tree_util.tree_leaves_with_path(state["params"])} if spec else {}
    out["specs"] = specs
    out["mu_embed_spec"] = str(state["opt_state"][1][0].mu["embed"].sharding.spec) if spec else ""
    with ctx:
        g = grad(state["params"], put(batches[0]))
        out["grads"] = {jax.tree_util.keystr(k): np.asarray(v).ravel().tolist()
                        for k, v in jax.tree_util.tree_leaves_with_path(g)}
        losses, norms = [], []
        for b in batches:
            state, metrics = step(state, put(b))
            losses.append(float(metrics["loss"]))
            norms.append(float(metrics["grad_norm"]))
        out["losses"], out["grad_norms"] = losses, norms
        out["params"] = {jax.tree_util.keystr(k): np.asarray(v).ravel().tolist()
                         for k, v in jax.tree_util.tree_leaves_with_path(state["params"])}
        out["specs_kept"] = spec is None or specs == {
            jax.tree_util.keystr(k): str(v.sharding.spec)
            for k, v in jax.tree_util.tree_leaves_with_path(state["params"])}
    return out

results = {"single": run(None)}
for name, spec in meshes.items():
    results[name] = run(spec)
m.update(dict(parametrization="mup", mup_base_width=16))
results["single_mup"] = run(None)
for name, spec in mup_meshes.items():
    results[name] = run(spec)
print("RESULT" + json.dumps(results))
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, common to its workers
    out = shared / "parallel_equality.json"
    with open(shared / "parallel_equality.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            out.write_text(json.dumps(_run_script()))
    return json.loads(out.read_text())


def _run_script() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=8 "
                        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(MESHES), json.dumps(MUP_MESHES)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def _close(a, b, rtol=1e-5, atol=1e-7):
    import numpy as np
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def reference(name: str) -> str:
    return "single_mup" if name in MUP_MESHES else "single"


@pytest.mark.parametrize("name", [*MESHES, *MUP_MESHES])
def test_gradients_equal_single_device(results, name):
    ref, got = results[reference(name)]["grads"], results[name]["grads"]
    assert ref.keys() == got.keys()
    for key in ref:
        scale = max(abs(x) for x in ref[key])
        _close(got[key], ref[key], atol=1e-6 * scale)


@pytest.mark.parametrize("name", [*MESHES, *MUP_MESHES])
def test_three_steps_give_the_same_losses_and_params(results, name):
    ref, got = results[reference(name)], results[name]
    _close(got["losses"], ref["losses"])
    _close(got["grad_norms"], ref["grad_norms"])
    assert len(set(ref["losses"])) == 3  # training moved
    for key in ref["params"]:
        _close(got["params"][key], ref["params"][key], atol=1e-6)
    assert got["specs_kept"]


def test_mup_trains_differently_from_sp(results):
    sp, mup = results["single"], results["single_mup"]
    assert sp["grads"].keys() == mup["grads"].keys()
    assert sp["losses"][0] != mup["losses"][0]  # the logits carry the 1/2 multiplier from the start
    assert sp["losses"][-1] != mup["losses"][-1]


def test_parameter_bytes_shrink_with_fsdp(results):
    single, data8, fsdp8, mixed = (results[k] for k in ("single", "data8", "fsdp8", "d2f2t2"))
    assert data8["param_bytes"] == single["param_bytes"]  # pure data parallelism replicates
    assert fsdp8["embed_bytes"] * 8 == single["embed_bytes"]
    assert fsdp8["param_bytes"] * 8 == single["param_bytes"]  # every dim here divides by 8
    assert fsdp8["state_bytes"] < single["state_bytes"] / 7  # mu and nu are sharded too
    assert mixed["embed_bytes"] * 4 == single["embed_bytes"]  # fsdp 2 x tensor 2
    assert single["param_bytes"] / 8 <= mixed["param_bytes"] < single["param_bytes"] / 3
    assert fsdp8["specs"]["['embed']"] == "P('tensor', 'fsdp')"
    assert fsdp8["mu_embed_spec"] == fsdp8["specs"]["['embed']"]


def test_partition_specs_are_the_intended_ones(results):
    specs = results["f2t2s2"]["specs"]
    assert specs["['embed']"] == "P('tensor', 'fsdp')"  # vocab -> tensor, embed -> fsdp
    assert specs["['head']"] == "P('fsdp', 'tensor')"
    assert specs["['blocks']['attn']['wq']"] == "P('stage', 'fsdp', 'tensor', None)"
    assert specs["['blocks']['attn']['wk']"] == "P('stage', 'fsdp', 'tensor', None)"  # kv_heads
    assert specs["['blocks']['attn']['wo']"] == "P('stage', 'tensor', None, 'fsdp')"
    assert specs["['blocks']['mlp']['w_up']"] == "P('stage', 'fsdp', 'tensor')"
    assert specs["['blocks']['mlp']['w_down']"] == "P('stage', 'tensor', 'fsdp')"
    assert specs["['blocks']['attn_norm']['scale']"] == "P('stage', 'fsdp')"
    assert specs["['final_norm']['scale']"] == "P('fsdp',)"
    # four stages hold a quarter of the layer stack each; embed and head are replicated
    s4, single = results["s4_mb4"], results["single"]
    assert s4["specs"]["['blocks']['mlp']['w_up']"] == "P('stage', 'fsdp', 'tensor')"  # size-1 axes
    non_block = 2 * single["embed_bytes"] + 4 * 32  # embed, head, final norm
    assert s4["param_bytes"] == (single["param_bytes"] - non_block) // 4 + non_block
    assert s4["pipeline"] == [4, 4, 1, "gpipe"]
    assert results["s4_circular2"]["pipeline"] == [4, 4, 2, "circular"]
    assert results["f2t2s2"]["pipeline"] == [2, 2, 1, "gpipe"]
    assert results["s4_1f1b_mb8"]["pipeline"] == [4, 8, 1, "1f1b"]


def test_1f1b_trains_like_gpipe(results):
    """Same mesh and microbatches: the 1F1B backward pass gives GPipe's gradients and steps."""
    gpipe, one_f_one_b = results["s4_mb8"], results["s4_1f1b_mb8"]
    for key in gpipe["grads"]:
        scale = max(abs(x) for x in gpipe["grads"][key])
        _close(one_f_one_b["grads"][key], gpipe["grads"][key], atol=1e-6 * scale)
    _close(one_f_one_b["losses"], gpipe["losses"])
    for key in gpipe["params"]:
        _close(one_f_one_b["params"][key], gpipe["params"][key], atol=1e-6)
