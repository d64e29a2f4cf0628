"""The notebooks run headless on small inputs (nbclient), and are committed without outputs."""

import re
from pathlib import Path

import pytest

from tests.test_fit_cli import EPOCH_CSV, write_sweep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
NAMES = ("fit_scaling_laws.ipynb", "reproduce_chinchilla.ipynb", "reproduce_kaplan.ipynb",
         "predictable_scaling.ipynb", "data_constrained.ipynb")
ENV = ("LM_SWEEP_DIR", "LM_N_CONVENTION", "LM_C_CONVENTION", "LM_LOSS", "LM_BOOTSTRAP",
       "LM_AT_FLOPS", "LM_EPOCH_CSV", "LM_START_STRIDE", "LM_HOLDOUT", "LM_MEMBERS")


def execute(name: str, monkeypatch, **env: str) -> tuple[str, int]:
    """Run notebook `name` from the notebooks folder with environment `env`; (the text it
    printed, the number of PNG images it displayed)."""
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_are_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert code[0].metadata.get("tags") == ["parameters"]  # papermill-style parameters cell


def test_fit_scaling_laws(tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path / "sweep")
    text, images = execute("fit_scaling_laws.ipynb", monkeypatch, LM_SWEEP_DIR=str(sweep),
                           LM_BOOTSTRAP="8")
    assert "37 finished runs, 35 of them in 5 IsoFLOP budgets" in text
    for approach in ("approach 1", "approach 2", "approach 3"):
        a = float(re.search(rf"^{approach}: a = ([0-9.]+)", text, re.M).group(1))
        assert a == pytest.approx(0.4516, abs=0.02)
    assert re.search(r"^km_nd: Nc = ", text, re.M)
    assert images == 9  # curves, IsoFLOPs, contours, residuals, allocation, 4 Kaplan plots


def test_reproduce_chinchilla(monkeypatch):
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()} (the notebook "
                    "would download it; tests stay offline)")
    text, images = execute("reproduce_chinchilla.ipynb", monkeypatch, LM_BOOTSTRAP="8",
                           LM_START_STRIDE="150")
    assert "245 points; 240 after dropping the 5 highest losses" in text
    assert re.search(r"^\s+E\s+1\.817 ", text, re.M)
    assert "L-BFGS-B from 30 of the paper's starts" in text
    assert re.search(r"^approach 2: a = 0\.5", text, re.M)
    assert images == 4


def test_reproduce_kaplan_on_a_synthetic_sweep(monkeypatch):
    text, images = execute("reproduce_kaplan.ipynb", monkeypatch, LM_BOOTSTRAP="20")
    assert "synthetic sweep: 49 finished runs" in text
    alpha_d = float(re.search(r"L\(N, D\) alpha_D\s+([0-9.]+)", text).group(1))
    assert alpha_d == pytest.approx(0.103, abs=0.01)  # the law that made the data
    assert images == 4


def backtest_rows(text: str) -> list[list[str]]:
    """The rows of the backtest tables the notebook printed, split on whitespace."""
    return [line.split() for line in text.splitlines() if line.startswith("approach")]


def test_predictable_scaling(tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path / "sweep")
    env = {"LM_SWEEP_DIR": str(sweep), "LM_BOOTSTRAP": "10"}
    if EPOCH_CSV.exists():
        env["LM_EPOCH_CSV"] = str(EPOCH_CSV)
    else:
        env["LM_EPOCH_CSV"] = str(tmp_path / "absent.csv")
    text, images = execute("predictable_scaling.ipynb", monkeypatch, **env)
    assert "37 runs, conventions {'n_convention': 'total', 'c_convention': '6ND'}" in text
    rows = backtest_rows(text)
    local = [row for row in rows if row[1] == "1e+17"]
    assert [row[0] for row in local] == ["approach1", "approach2", "approach3"]
    for row in local:  # the synthetic law, predicted from the 4 smaller budgets
        assert row[2:6] == ["4", "budgets", "<=", "3e+16"]
        assert abs(float(row[-2].rstrip("%"))) < 1.0
    if not EPOCH_CSV.exists():
        assert "Epoch AI extraction not found" in text and images == 1
        return
    assert "240 points, 134 of them in 9 IsoFLOP budgets" in text
    chinchilla = [row for row in rows if row[1] in ("1e+21", "3e+21")]
    assert [(row[0], row[1]) for row in chinchilla] == [
        ("approach2", "1e+21"), ("approach2", "3e+21"), ("approach3", "1e+21"),
        ("approach3", "3e+21")]
    for row in chinchilla:  # fitted up to 6e20, both within 1.5% of the held-out minima
        assert abs(float(row[-2].rstrip("%"))) < 1.5
    assert images == 2


def test_data_constrained_recovers_the_papers_decay(monkeypatch):
    text, images = execute("data_constrained.ipynb", monkeypatch, LM_BOOTSTRAP="10")
    assert "synthetic: 76 runs drawn from the paper's law" in text
    r_d = float(re.search(r"^\s+R_D_star\s+([0-9.]+) ", text, re.M).group(1))
    assert r_d == pytest.approx(15.39, rel=0.1)  # the law that made the runs
    assert re.search(r"^\s+4e\+08\s+1e\+09\s+16 ", text, re.M)  # the cost of 16 epochs
    assert images == 1
