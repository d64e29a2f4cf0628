"""lm.pyfile: user files load with their directory on the import path, and fail in one line."""

import sys
from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.pyfile import call_python_file

SWEEPS = Path(__file__).resolve().parents[1] / "experiments" / "sweeps"


def test_a_file_imports_a_module_beside_it_and_the_path_is_restored(tmp_path):
    (tmp_path / "shared_bits.py").write_text("VALUE = {'lr': 0.5}\n")
    (tmp_path / "exp.py").write_text("from shared_bits import VALUE\n\ndef get_config():\n    return VALUE\n")
    before = list(sys.path)
    assert call_python_file(tmp_path / "exp.py", "get_config", kind="config") == {"lr": 0.5}
    assert sys.path == before


def test_the_gpu_sweeps_share_one_fineweb_base():
    bases = [call_python_file(SWEEPS / f"{name}.py", "get_sweep", kind="sweep")
             for name in ("chinchilla_approach1", "isoflop", "km_n", "km_d")]
    for sweep in bases:
        assert sweep["base"]["data"]["sources"] == ["hf:HuggingFaceFW/fineweb-edu:sample-10BT"]
        assert sweep["family"] == bases[0]["family"]
        assert {k: v for k, v in sweep["base"]["train"].items()
                if k not in ("warmup_steps", "eval_every", "checkpoint_every")} == {
            "batch_size": 256, "lr": 1e-3, "eval_batches": 32}


def test_the_shared_base_is_not_a_sweep():
    with pytest.raises(ConfigError, match="fineweb_base.py defines no get_sweep()"):
        call_python_file(SWEEPS / "fineweb_base.py", "get_sweep", kind="sweep")
