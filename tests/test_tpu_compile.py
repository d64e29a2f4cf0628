"""`lm train --compile-only --topology`: the train step compiled by the TPU compiler for a TPU
slice this machine lacks, and the HLO reading behind its collectives and FLOPs.

The compiles need the optional extra (`pip install -e '.[tpu]'`, libtpu) and skip without
it, as in CI; the HLO parser and the error messages are tested everywhere.
"""

import importlib.util
import json
import os
import textwrap

import pytest

from lm.cli import main
from lm.config import ConfigError, load_config
from lm.scaling.counts import param_counts
from lm.train import tpu_compile
from lm.train.hlo import Module, array_bytes, count_collectives, matmul_flops

TINY = "experiments/configs/tiny.py"
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="needs the TPU compiler: "
                                  "pip install -e '.[tpu]' (libtpu)")

# One device's program, as the TPU and CPU compilers print it: a 4-trip layer loop whose
# body gathers a weight (async, seen twice under one channel), reduce-scatters its gradient
# (TPU's all-reduce-scatter fusion), gathers another through an all-reduce of a zero buffer,
# and reduce-scatters one by slicing an all-reduce; outside the loop one all-reduce, one
# collective-permute and one all-to-all.
HLO = textwrap.dedent("""\
    HloModule jit_step, entry_computation_layout={()->f32[]}

    %add (x: f32[], y: f32[]) -> f32[] {
      %x = f32[] parameter(0)
      %y = f32[] parameter(1)
      ROOT %sum = f32[] add(f32[] %x, f32[] %y)
    }

    %all-reduce-scatter.1 (input.1: f32[64,32]) -> f32[16,32] {
      %input.1 = f32[64,32]{1,0} parameter(0)
      %all-reduce.9 = f32[64,32]{1,0} all-reduce(%input.1), channel_id=7, replica_groups={{0,1,2,3}}, to_apply=%add
      %zero = s32[] constant(0)
      ROOT %slice = f32[16,32]{1,0} dynamic-slice(%all-reduce.9, %zero, %zero), dynamic_slice_sizes={16,32}
    }

    %gather_start (param_0.1: bf16[16,32]) -> (bf16[16,32], bf16[64,32]) {
      %param_0.1 = bf16[16,32]{1,0:T(8,128)(2,1)} parameter(0)
      %all-gather.1 = bf16[64,32]{1,0:T(8,128)(2,1)S(1)} all-gather(%param_0.1), channel_id=3, replica_groups=mesh['axis_0'=4] {'axis_0'}, dimensions={0}
      ROOT %t = (bf16[16,32]{1,0}, bf16[64,32]{1,0}) tuple(%param_0.1, %all-gather.1)
    }

    %gather_done (param_0.2: bf16[16,32]) -> bf16[64,32] {
      %param_0.2 = bf16[16,32]{1,0} parameter(0)
      ROOT %all-gather.2 = bf16[64,32]{1,0} all-gather(%param_0.2), channel_id=3, replica_groups=mesh['axis_0'=4] {'axis_0'}, dimensions={0}
    }

    %pad_fusion (param_0.3: f32[], param_1.3: f32[8,32], param_2.3: s32[]) -> f32[32,32] {
      %param_0.3 = f32[] parameter(0)
      %zeros = f32[32,32]{1,0} broadcast(%param_0.3), dimensions={}
      %param_1.3 = f32[8,32]{1,0} parameter(1)
      %param_2.3 = s32[] parameter(2)
      %zero.1 = s32[] constant(0)
      ROOT %dus = f32[32,32]{1,0} dynamic-update-slice(%zeros, %param_1.3, %param_2.3, %zero.1)
    }

    %slice_fusion (param_0.4: f32[32,8], param_1.4: s32[]) -> f32[8,8] {
      %param_0.4 = f32[32,8]{1,0} parameter(0)
      %param_1.4 = s32[] parameter(1)
      %zero.2 = s32[] constant(0)
      ROOT %ds = f32[8,8]{1,0} dynamic-slice(%param_0.4, %param_1.4, %zero.2), dynamic_slice_sizes={8,8}
    }

    %body (p: (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8])) -> (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) {
      %p = (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) parameter(0)
      %i = s32[] get-tuple-element(%p), index=0
      %shard = f32[8,32]{1,0} get-tuple-element(%p), index=1
      %w = bf16[16,32]{1,0} get-tuple-element(%p), index=2
      %g = f32[64,32]{1,0} get-tuple-element(%p), index=3
      %h = f32[32,8]{1,0} get-tuple-element(%p), index=4
      %start = (bf16[16,32]{1,0}, bf16[64,32]{1,0}) fusion(%w), kind=kCustom, calls=%gather_start
      %done = bf16[64,32]{1,0} fusion(%w), kind=kCustom, calls=%gather_done
      %rs = f32[16,32]{1,0} fusion(%g), kind=kCustom, calls=%all-reduce-scatter.1
      %c0 = f32[] constant(0)
      %padded = f32[32,32]{1,0} fusion(%c0, %shard, %i), kind=kLoop, calls=%pad_fusion
      %all-reduce.2 = f32[32,32]{1,0} all-reduce(%padded), channel_id=11, replica_groups={{0,1,2,3}}, to_apply=%add
      %all-reduce.3 = f32[32,8]{1,0} all-reduce(%h), channel_id=12, replica_groups={{0,1,2,3}}, to_apply=%add
      %sliced = f32[8,8]{1,0} fusion(%all-reduce.3, %i), kind=kLoop, calls=%slice_fusion
      %dot.1 = f32[64,64]{1,0} dot(%done, %done), lhs_contracting_dims={1}, rhs_contracting_dims={1}
      %one = s32[] constant(1)
      %next = s32[] add(%i, %one)
      ROOT %out = (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) tuple(%next, %shard, %w, %g, %h)
    }

    %cond (q: (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8])) -> pred[] {
      %q = (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) parameter(0)
      %n = s32[] get-tuple-element(%q), index=0
      %limit = s32[] constant(5)
      ROOT %lt = pred[] compare(%n, %limit), direction=LT
    }

    ENTRY %main (a: f32[8,32], b: bf16[16,32], c: f32[64,32], d: f32[32,8], e: f32[128]) -> f32[128] {
      %a = f32[8,32]{1,0} parameter(0)
      %b = bf16[16,32]{1,0} parameter(1)
      %c = f32[64,32]{1,0} parameter(2)
      %d = f32[32,8]{1,0} parameter(3)
      %start_at = s32[] constant(1)
      %init = (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) tuple(%start_at, %a, %b, %c, %d)
      %loop = (s32[], f32[8,32], bf16[16,32], f32[64,32], f32[32,8]) while(%init), condition=%cond, body=%body
      %e = f32[128]{0} parameter(4)
      %ar-start = f32[128]{0} all-reduce-start(%e), channel_id=20, replica_groups={{0,1,2,3}}, to_apply=%add
      %ar-done = f32[128]{0} all-reduce-done(%ar-start)
      %cp-start = (f32[128]{0}, f32[128]{0}, u32[], u32[]) collective-permute-start(%ar-done), channel_id=21, source_target_pairs={{0,1},{1,2},{2,3},{3,0}}
      %cp-done = f32[128]{0} collective-permute-done(%cp-start)
      ROOT %a2a = f32[128]{0} all-to-all(%cp-done), channel_id=22, replica_groups={{0,1,2,3}}, dimensions={0}
    }
    """)


def test_collectives_are_counted_per_execution_and_named_for_what_they_do():
    stats, unread = count_collectives(HLO)
    assert unread == 0
    trips = 4  # i from 1 while i < 5
    as_counts = {kind: (s.count, s.bytes) for kind, s in stats.items()}
    assert as_counts == {
        # the async gather once per trip (start and done share channel 3), and the
        # all-reduce of a zero buffer holding this device's shard
        "all-gather": (2 * trips, trips * (64 * 32 * 2 + 32 * 32 * 4)),
        # TPU's all-reduce-scatter fusion, and an all-reduce whose result is only sliced
        "reduce-scatter": (2 * trips, trips * (64 * 32 * 4 + 32 * 8 * 4)),
        "all-reduce": (1, 128 * 4),
        "collective-permute": (1, 128 * 4),
        "all-to-all": (1, 128 * 4)}


def test_trip_counts_come_from_the_condition_or_known_trip_count():
    module = Module(HLO)
    assert module.executions["body"] == 4 and module.executions["gather_start"] == 4
    known = HLO.replace("condition=%cond, body=%body",
                        'condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"7"}}')
    assert Module(known).executions["body"] == 7
    unreadable = HLO.replace("compare(%n, %limit)", "compare(%n, %n)")
    stats, unread = count_collectives(unreadable)
    assert unread == 1 and stats["all-gather"].count == 2  # counted as running once


def test_matmul_flops_count_every_trip_and_read_jax_lowered_text():
    assert matmul_flops(HLO) == 4 * 2 * 64 * 64 * 32
    lowered = textwrap.dedent("""\
        HloModule jit_f

        ENTRY main.3 {
          Arg_0.1 = f32[4,8]{1,0} parameter(0)
          Arg_1.2 = f32[8,16]{1,0} parameter(1)
          ROOT dot.3 = f32[4,16]{1,0} dot(f32[4,8]{1,0} Arg_0.1, f32[8,16]{1,0} Arg_1.2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
        }
        """)
    assert matmul_flops(lowered) == 2 * 4 * 16 * 8


def test_array_bytes_reads_dtypes_tuples_and_tiled_layouts():
    assert array_bytes("bf16[2,16,64]{1,0,2:T(2,128)(2,1)S(1)}") == 2 * 16 * 64 * 2
    assert array_bytes("(f32[64]{0:T(128)}, pred[8], s4[4], token[])") == 64 * 4 + 8 + 2
    assert array_bytes("f32[]") == 4


def _train(*args: str) -> list[str]:
    return ["train", "--config", TINY, "--compile-only", *args]


def test_topology_and_devices_are_refused_together(capsys):
    assert main(_train("--topology", "v5e:2x2", "--devices", "8")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--topology and --devices exclude each other" in err


def test_topology_needs_compile_only(capsys):
    assert main(["train", "--config", TINY, "--topology", "v5e:2x2", "--workdir", "x"]) == 2
    assert "needs --compile-only" in capsys.readouterr().err


def test_without_the_extra_topology_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setattr(tpu_compile, "tpu_compiler_available", lambda: False)
    assert main(_train("--topology", "v5p:4x4x4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[tpu]'" in err


@pytest.mark.parametrize("name, reason", [("v5p-128", "counts TensorCores"),
                                          ("bogus", "not a topology name")])
def test_a_malformed_topology_name_lists_examples(name, reason):
    with pytest.raises(ConfigError) as err:
        tpu_compile.topology_devices(name)
    message = str(err.value)
    assert reason in message and "v5p:4x4x4" in message and "\n" not in message


@pytest.fixture
def libtpu_env(monkeypatch):
    """prepare_environment sets these for libtpu; give them back after the test."""
    for key in ("JAX_PLATFORMS", "ALLOW_MULTIPLE_LIBTPU_LOAD", "TPU_SKIP_MDS_QUERY",
                "TPU_WORKER_HOSTNAMES", "TPU_HOST_BOUNDS"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if not os.environ[key]:
            monkeypatch.delenv(key)


@needs_libtpu
def test_a_topology_libtpu_rejects_is_one_line_with_examples(libtpu_env):
    for name in ("v7:2x2", "v5p:2x2x2x2"):
        with pytest.raises(ConfigError) as err:
            tpu_compile.topology_devices(name)
        assert "e.g. v5e:2x2" in str(err.value) and "\n" not in str(err.value)
    assert len(tpu_compile.topology_devices("v5e:1x1")) == 1  # smaller than one host
    assert len(tpu_compile.topology_devices("v4:2x2x1")) == 4  # megacore: a device per chip


@needs_libtpu
def test_a_mesh_that_does_not_fit_the_slice_is_named(libtpu_env):
    cfg = load_config(TINY, ["--config.mesh.data=3"])
    with pytest.raises(ConfigError, match=r"mesh axis sizes \(data=3.*4 devices"):
        tpu_compile.compile_for_topology(cfg, "v5e:2x2")


@needs_libtpu
def test_fsdp_over_a_2x2_slice_shards_parameters_and_gathers_them(libtpu_env, capsys):
    # one compile through the command: tiny's dims all divide by 4
    assert main(_train("--topology", "v5e:2x2", "--config.mesh.data=1",
                       "--config.mesh.fsdp=-1")) == 0
    out = capsys.readouterr().out
    assert "4 x TPU v5e, 16 GiB HBM each" in out and "fits: peak" in out
    report = json.loads(out.strip().splitlines()[-1])
    params = param_counts(load_config(TINY).model).total
    assert report["devices"] == 4 and report["mesh"]["fsdp"] == 4 and report["fits"]
    assert report["param_bytes"] * 4 == params * 4  # each chip holds 1/4 of the f32 parameters
    assert report["opt_state_bytes"] >= 2 * report["param_bytes"]
    gathers, scatters = report["collectives"]["all-gather"], report["collectives"]["reduce-scatter"]
    layers = load_config(TINY).model.num_layers
    # every layer's seven matrices gathered for the forward pass, each gradient reduce-scattered
    assert gathers["count"] >= 7 * layers and gathers["bytes"] >= 0.9 * params * 4
    assert scatters["count"] >= layers and scatters["bytes"] >= 0.9 * params * 4
    assert report["collectives"]["all-reduce"]["bytes"] < 1024  # only the loss and norms' sums
    # dots counted with their loop trips: at least the model's FLOPs; XLA counts the loop once
    assert report["matmul_flops"] >= report["model_flops"] > report["xla_flops"]


@needs_libtpu
def test_a_step_too_big_for_the_chip_is_reported_with_the_compilers_words(libtpu_env):
    cfg = load_config(TINY, ["--config.train.batch_size=1024", "--config.data.seq_len=512"])
    report = tpu_compile.compile_for_topology(cfg, "v5e:1x1")
    assert report.fits is False and "exceeds available HBM" in report.compiler_error
    table = report.table()
    assert "WARNING: does not fit: the TPU compiler ran out of HBM" in table
    assert "train.grad_accum" in table and "collectives per step" in table
    # the state's shards need no executable, the temporaries come from XLA's dump
    params = param_counts(cfg.model).total
    assert report.memory.param_bytes == params * 4
    assert report.memory.temp_bytes > tpu_compile.HBM_GIB["TPU v5e"] * tpu_compile.GIB
    assert report.memory.peak_bytes > report.memory.temp_bytes


@pytest.mark.parametrize("overrides, expected", [
    ([], "Shard more (mesh.fsdp=-1 mesh.data=1, or mesh.tensor), split the batch "
         "(train.grad_accum=2), or take a bigger slice"),
    (["--config.mesh.data=1", "--config.mesh.fsdp=-1", "--config.train.grad_accum=2"],
     "Split the batch (train.grad_accum=4), or take a bigger slice"),
    (["--config.model.remat=dots", "--config.train.batch_size=3"],
     "Shard more (mesh.fsdp=-1 mesh.data=1, or mesh.tensor), recompute more (model.remat=full), "
     "or take a bigger slice"),
])
def test_the_advice_leaves_out_what_the_config_already_does(overrides, expected):
    """llama_7b already recomputes everything (model.remat=full): no advice to do so."""
    cfg = load_config("experiments/configs/llama_7b.py", overrides)
    assert tpu_compile.advice(cfg) == expected
