"""The Ray executor gives byte-identical outputs to the local one (a local Ray instance)."""

from pathlib import Path

import pytest

from lm.data.prepare.executor import prepare
from lm.data.prepare.recipe import validate_recipe
from tests.test_prepare_pipeline import output_bytes, write_corpus

ray = pytest.importorskip("ray", reason="the Ray executor test needs ray (pip install 'ray>=2.40')")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def test_ray_and_local_executors_write_identical_outputs(tmp_path, ray_session):
    data = write_corpus(tmp_path / "data", num_files=3, docs_per_file=10)
    raw = {"sources": [{"name": "web", "path": str(data)}],
           "steps": [{"step": "normalize"}, {"step": "tests.test_prepare_pipeline:DropWord"}, {"step": "pii"},
                     {"step": "exact_dedup"}, {"step": "minhash_dedup"}],
           "execution": {"docs_per_task": 4}, "tokenizer": {"vocab_size": 300}}
    outputs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        rep = prepare(validate_recipe(raw, base_dir=tmp_path), out, executor=executor,
                      workers=2 if executor == "ray" else 1, progress=False)
        outputs[executor] = output_bytes(out)
    assert rep["documents"]["clean"] == 25 and rep["tasks"] == 9
    assert outputs["ray"] == outputs["local"]
