"""Hugging Face LLaMA checkpoints in and out: config mapping, safetensors I/O, exact
parameter round trips, errors, continued training, and (with torch + transformers)
logits that match LlamaForCausalLM in both directions."""

import json
import shutil
from pathlib import Path

import jax
import ml_collections
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from lm.cli import main
from lm.config import ConfigError, default_config, from_json_dict, load_config
from lm.convert.from_hf import convert_from_hf
from lm.convert.hf_config import hf_config_from_model, model_fields_from_hf
from lm.convert.safetensors_io import INDEX_FILE, SINGLE_FILE, SafetensorsReader, write_safetensors
from lm.convert.to_hf import convert_to_hf, hf_tensors
from lm.convert.workdir import write_workdir
from lm.train.state import abstract_params, restore_params
from lm.data.tokenizer import Tokenizer, train_tokenizer
from lm.train.checkpoint import CheckpointError
from lm.train.loop import train
from tests.helpers import forward1, stdlib_texts, tiny_model_config

VOCAB = 384
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return train_tokenizer(stdlib_texts(), tmp_path_factory.mktemp("tok"), vocab_size=VOCAB)


def run_config(tokenizer: Tokenizer, **model) -> ml_collections.ConfigDict:
    cfg = default_config()
    cfg.model = tiny_model_config(vocab_size=VOCAB, max_seq_len=128, **model)
    cfg.data.tokenizer_path = str(tokenizer.path)
    return cfg


def random_params(m, seed: int) -> dict:
    """Weights ~ Normal(0, init_std) and norm scales ~ 1 + Normal(0, init_std), drawn with
    numpy (no model compile needed)."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        offset = 1.0 if path[-1].key == "scale" else 0.0
        return (offset + m.init_std * rng.standard_normal(s.shape)).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(m)[1])


def write_hf_dir(path: Path, m, params: dict, tokenizer: Tokenizer, extra_tensors: dict | None = None,
                 **hf_changes) -> Path:
    """An HF LLaMA directory as transformers lays it out, written without transformers."""
    path.mkdir(parents=True)
    tensors = [*hf_tensors(params, m), *(extra_tensors or {}).items()]
    write_safetensors(tensors, path, max_shard_bytes=2**30)
    hf = hf_config_from_model(m, bos_id=1, eos_id=2)
    (path / "config.json").write_text(json.dumps({**hf, **hf_changes}))
    shutil.copyfile(tokenizer.path, path / "tokenizer.model")
    return path


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- config.json mapping -------------------------------------------------------------------

V4_CONFIG = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
             "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
             "rope_scaling": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}


def test_hf_config_fields_of_transformers_4_and_5():
    fields = model_fields_from_hf(V4_CONFIG, Path("c.json"))
    assert fields == {"vocab_size": 100, "d_model": 64, "num_layers": 3, "num_heads": 8,
                      "num_kv_heads": 2, "head_dim": 0, "d_ff": 96, "max_seq_len": 256,
                      "rope_theta": 500000.0, "norm_eps": 1e-6, "tie_embeddings": True,
                      "param_dtype": "bfloat16"}
    v5 = {k: v for k, v in V4_CONFIG.items() if k not in ("rope_theta", "rope_scaling", "torch_dtype")}
    v5.update(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, dtype="float16",
              head_dim=16)  # an explicit head_dim other than hidden // heads
    fields5 = model_fields_from_hf(v5, Path("c.json"))
    assert fields5 == {**fields, "head_dim": 16, "param_dtype": "float32"}


def test_hf_config_round_trips_an_lm_model():
    m = tiny_model_config(head_dim=16, tie_embeddings=True, rope_theta=1234.0, norm_eps=3e-6)
    fields = model_fields_from_hf(hf_config_from_model(m, bos_id=1, eos_id=2), Path("c.json"))
    assert fields == {k: m[k] for k in fields}


@pytest.mark.parametrize("change, field", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"model_type": "mistral"}, "model_type"),
    ({"hidden_size": None}, "hidden_size"),
    ({"torch_dtype": "int8"}, "torch_dtype"),
])
def test_unsupported_hf_config_fields_are_named(change, field):
    with pytest.raises(ConfigError, match=f"c.json: field '{field}'"):
        model_fields_from_hf({**V4_CONFIG, **change}, Path("c.json"))


# --- safetensors ---------------------------------------------------------------------------

def test_safetensors_shards_and_index_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((8, 16)).astype(np.float32),
               "b": rng.standard_normal((40,)).astype(ml_dtypes.bfloat16),
               "c": rng.standard_normal((4, 4, 4)).astype(np.float32),
               "d": np.arange(10, dtype=np.float32)}
    # a (512 bytes) is too big for any shard and gets one of its own; b, c, d fill the next ones
    files = write_safetensors(tensors.items(), tmp_path / "s", max_shard_bytes=300)
    assert [f.name for f in files] == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    index = json.loads((tmp_path / "s" / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
    assert index["weight_map"] == {"a": files[0].name, "b": files[1].name, "c": files[2].name,
                                   "d": files[2].name}
    with SafetensorsReader(tmp_path / "s") as reader:
        assert reader.names() == ["a", "b", "c", "d"]
        assert reader.shape("c") == (4, 4, 4)
        for name, value in tensors.items():
            read = reader.get(name)
            assert read.dtype == value.dtype
            np.testing.assert_array_equal(read, value)
    single = write_safetensors(tensors.items(), tmp_path / "one", max_shard_bytes=10**6)
    assert [f.name for f in single] == [SINGLE_FILE]
    assert not (tmp_path / "one" / INDEX_FILE).exists()
    with SafetensorsReader(tmp_path / "one") as reader:
        np.testing.assert_array_equal(reader.get("a"), tensors["a"])


def test_safetensors_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor"):
        SafetensorsReader(tmp_path)
    x = np.ones((64,), np.float32)
    files = write_safetensors([("x", x), ("y", x)], tmp_path / "s", max_shard_bytes=300)
    files[1].unlink()
    with SafetensorsReader(tmp_path / "s") as reader:
        np.testing.assert_array_equal(reader.get("x"), x)
        with pytest.raises(CheckpointError, match=f"{files[1].name} is listed in .* does not exist"):
            reader.get("y")
        with pytest.raises(CheckpointError, match="tensor 'z' is not in"):
            reader.get("z")
    (tmp_path / "s" / INDEX_FILE).write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match="weight_map"):
        SafetensorsReader(tmp_path / "s")
    with pytest.raises(ValueError, match="'x' given twice"):  # after the first shard was written
        write_safetensors([("x", x), ("y", x), ("x", x)], tmp_path / "t", max_shard_bytes=300)
    assert not list((tmp_path / "t").iterdir())  # nothing half-written is left


# --- lm -> HF -> lm ------------------------------------------------------------------------

@pytest.mark.parametrize("tied, dtype", [(False, "float32"), (True, "bfloat16")])
def test_export_then_import_gives_identical_parameters(tmp_path, tokenizer, tied, dtype):
    cfg = run_config(tokenizer, tie_embeddings=tied, param_dtype=dtype)  # GQA: 4 heads, 2 kv
    params = random_params(cfg.model, seed=3)
    write_workdir(cfg, params, tmp_path / "run", {"test": "random"})
    summary = convert_to_hf(tmp_path / "run", tmp_path / "hf", max_shard_bytes=20_000)
    assert len(summary["files"]) > 1  # sharded, with an index
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (hf["architectures"], hf["torch_dtype"], hf["tie_word_embeddings"]) == (
        ["LlamaForCausalLM"], dtype, tied)
    assert (hf["num_key_value_heads"], hf["bos_token_id"], hf["eos_token_id"]) == (2, 1, 2)
    with SafetensorsReader(tmp_path / "hf") as reader:
        assert ("lm_head.weight" in reader.names()) == (not tied)
        assert reader.shape("model.layers.1.self_attn.k_proj.weight") == (2 * 8, 32)
        assert reader.shape("model.layers.0.self_attn.o_proj.weight") == (32, 4 * 8)
    convert_from_hf(tmp_path / "hf", tmp_path / "back")
    back = from_json_dict(json.loads((tmp_path / "back" / "config.json").read_text()))
    assert {k: back.model[k] for k in cfg.model} == dict(cfg.model)
    assert_trees_equal(restore_params(tmp_path / "back", back)[1], params)
    assert (tmp_path / "back" / "tokenizer" / "tokenizer.model").read_bytes() == tokenizer.path.read_bytes()


def test_import_refuses_a_checkpoint_that_does_not_fit(tmp_path, tokenizer):
    m = run_config(tokenizer).model
    params = random_params(m, seed=1)
    good = write_hf_dir(tmp_path / "good", m, params, tokenizer)

    def variant(name: str, edit) -> Path:
        path = tmp_path / name
        shutil.copytree(good, path)
        with SafetensorsReader(good) as reader:
            tensors = {n: reader.get(n) for n in reader.names()}
        edit(tensors)
        (path / SINGLE_FILE).unlink()
        write_safetensors(tensors.items(), path, max_shard_bytes=2**30)
        return path

    missing = variant("missing", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match="'model.layers.1.mlp.up_proj.weight' is missing"):
        convert_from_hf(missing, tmp_path / "w1")
    extra = variant("extra", lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.zeros(32)}))
    with pytest.raises(CheckpointError, match=r"q_proj.bias"):
        convert_from_hf(extra, tmp_path / "w2")
    wrong = variant("wrong", lambda t: t.update({"model.norm.weight": np.ones(31, np.float32)}))
    with pytest.raises(CheckpointError, match=r"'model.norm.weight' has shape \(31,\) but config.json implies \(32,\)"):
        convert_from_hf(wrong, tmp_path / "w3")
    with pytest.raises(ConfigError, match="'model.num_kv_heads': 4 disagrees"):
        convert_from_hf(good, tmp_path / "w4", overrides=["--config.model.num_kv_heads=4"])
    no_tok = tmp_path / "no_tok"
    shutil.copytree(good, no_tok)
    (no_tok / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.model does not exist.*tokenizer_path"):
        convert_from_hf(no_tok, tmp_path / "w5")
    bad_bos = write_hf_dir(tmp_path / "bos", m, params, tokenizer, bos_token_id=7)
    with pytest.raises(ConfigError, match="'bos_token_id' is 7"):
        convert_from_hf(bad_bos, tmp_path / "w6")
    convert_from_hf(good, tmp_path / "w7")
    with pytest.raises(ConfigError, match="already holds a run"):
        convert_from_hf(good, tmp_path / "w7")
    assert main(["convert", "to-hf", str(tmp_path / "w7"), str(good)]) == 2  # not empty: refused


def test_a_tied_import_takes_a_stored_head_only_if_it_equals_the_embedding(tmp_path, tokenizer):
    m = run_config(tokenizer, tie_embeddings=True).model
    params = random_params(m, seed=2)
    same = write_hf_dir(tmp_path / "same", m, params, tokenizer, {"lm_head.weight": params["embed"]})
    convert_from_hf(same, tmp_path / "run")
    assert "head" not in restore_params(tmp_path / "run", load_config(tmp_path / "run" / "experiment.py"))[1]
    other = write_hf_dir(tmp_path / "other", m, params, tokenizer, {"lm_head.weight": params["embed"] + 1})
    with pytest.raises(CheckpointError, match="tie_word_embeddings but lm_head.weight differs"):
        convert_from_hf(other, tmp_path / "run2")


# --- continued pretraining and sampling from an imported checkpoint --------------------------

def test_training_continues_from_the_imported_checkpoint_and_sampling_works(tmp_path, tokenizer, capsys):
    m = run_config(tokenizer).model
    imported = random_params(m, seed=7)
    hf = write_hf_dir(tmp_path / "hf", m, imported, tokenizer)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(stdlib_texts()):
        (corpus / f"{i}.py").write_text(text)
    run = tmp_path / "run"
    assert main(["convert", "from-hf", str(hf), str(run), f"--config.data.sources=['{corpus}']",
                 "--config.data.seq_len=32", "--config.data.heldout_fraction=0.3",
                 "--config.train.batch_size=8", "--config.train.steps=2", "--config.train.lr=1e-6",
                 "--config.train.warmup_steps=0", "--config.train.eval_batches=1"]) == 0
    cfg = load_config(run / "experiment.py")  # what `lm train --config run/experiment.py` reads
    assert cfg.data.sources == (str(corpus),) and cfg.model.vocab_size == VOCAB
    assert train(cfg, run)["step"] == 2
    _, trained, step = restore_params(run, cfg)
    assert step == 2
    # Two steps at lr 1e-6 move each weight by at most ~2e-6: training went on from the imported
    # weights, not from the run's own random initialisation (std 0.02, so ~0.05 away).
    for new, old in zip(jax.tree.leaves(trained), jax.tree.leaves(imported)):
        assert np.abs(np.asarray(new) - old).max() < 1e-4
    capsys.readouterr()
    assert main(["sample", "--workdir", str(run), "--prompt", "def ", "--max-new-tokens", "4"]) == 0
    assert "--- sample (step 2) ---\ndef " in capsys.readouterr().out


# --- logits against transformers' LlamaForCausalLM (optional: torch CPU + transformers) ---

def transformers_or_skip():
    reason = "optional test extra: torch (CPU build) and transformers compare logits with LlamaForCausalLM"
    return pytest.importorskip("torch", reason=reason), pytest.importorskip("transformers", reason=reason)


def real_text_batch(tokenizer: Tokenizer, rows: int = 3, length: int = 48) -> np.ndarray:
    return np.asarray([[tokenizer.bos_id] + tokenizer.encode(text)[:length - 1]
                       for text in stdlib_texts()[:rows]], np.int32)


def lm_logits(workdir: Path, tokens: np.ndarray, rotary_pairs_adjacent: bool = False) -> np.ndarray:
    cfg = from_json_dict(json.loads((workdir / "config.json").read_text()))
    graphdef, params, _ = restore_params(workdir, cfg)
    if rotary_pairs_adjacent:  # a wrong layout, to show the comparison can tell
        k = params["blocks"]["attn"]["wq"].shape[-1]
        order = np.arange(k).reshape(2, k // 2).T.reshape(-1)  # 0, K/2, 1, K/2+1, ...
        for name in ("wq", "wk"):
            params["blocks"]["attn"][name] = params["blocks"]["attn"][name][..., order]
    return np.asarray(forward1(nnx.merge(graphdef, params), jax.numpy.asarray(tokens)))


@pytest.mark.parametrize("tied", [False, True])
def test_import_matches_transformers_logits(tmp_path, tokenizer, tied):
    torch, transformers = transformers_or_skip()
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, initializer_range=0.15)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "hf")
    shutil.copyfile(tokenizer.path, tmp_path / "hf" / "tokenizer.model")
    convert_from_hf(tmp_path / "hf", tmp_path / "run")
    tokens = real_text_batch(tokenizer)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    diff = np.abs(lm_logits(tmp_path / "run", tokens) - expected).max()
    print(f"HF -> lm (tied={tied}): max |logit difference| {diff:.3g} (logits up to {np.abs(expected).max():.3g})")
    assert diff < 1e-4
    assert np.abs(lm_logits(tmp_path / "run", tokens, rotary_pairs_adjacent=True) - expected).max() > 1e-2


@pytest.mark.parametrize("tied", [False, True])
def test_export_matches_transformers_logits_and_tokenizer(tmp_path, tokenizer, tied):
    torch, transformers = transformers_or_skip()
    cfg = run_config(tokenizer, tie_embeddings=tied, init_std=0.15)
    write_workdir(cfg, random_params(cfg.model, seed=11), tmp_path / "run", {"test": "random"})
    convert_to_hf(tmp_path / "run", tmp_path / "hf", max_shard_bytes=20_000)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in stdlib_texts()[:3]:
        ids = hf_tokenizer(text)["input_ids"]
        assert ids == [tokenizer.bos_id] + tokenizer.encode(text)
        assert hf_tokenizer.decode(ids, skip_special_tokens=True) == text
    tokens = real_text_batch(tokenizer)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    diff = np.abs(lm_logits(tmp_path / "run", tokens) - expected).max()
    print(f"lm -> HF (tied={tied}): max |logit difference| {diff:.3g} (logits up to {np.abs(expected).max():.3g})")
    assert diff < 1e-4
