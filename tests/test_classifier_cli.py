"""`lm data train-classifier` (lm.data.classify.train_config, train_command) and the steps' `model` argument."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lm.cli import main
from lm.config import ConfigError
from lm.data.checks import ArgumentError
from lm.data.classify import LinearClassifier, QualityFilter, ToxicityFilter, load_labelled_csv
from lm.data.classify.train_command import train_from_file
from lm.data.classify.train_config import load_classifier_spec
from lm.data.langid import LanguageFilter, LanguageId
from lm.data.prepare.recipe import validate_recipe
from lm.data.prepare.steps import build_step
from lm.data.read import DataError
from tests.test_classify import constant_model, synthetic

REPO = Path(__file__).resolve().parents[1]
FASTTEXT_REASON = "fastText training needs the optional fasttext-wheel package (pip install 'lm[fasttext]')"
KINDS = {0: "neither", 1: "offensive"}
SMALL_LM = {"n_buckets": 1 << 14, "epochs": 10, "learning_rate": 0.3}
SMALL_FASTTEXT = {"dim": 8, "bucket": 4096, "epoch": 5, "minn": 0, "maxn": 0}


def write_csv(path: Path, n: int = 1200) -> Path:
    """`n` synthetic comments (column `comment`) labelled `kind`: hate / offensive (marker word) or neither."""
    texts, labels = synthetic(n)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["comment", "kind"])
        for i, (text, label) in enumerate(zip(texts, labels)):
            writer.writerow([text, "hate" if label and i % 4 == 1 else KINDS[int(label)]])
    return path


def write_config(tmp_path: Path, settings: dict, name: str = "clf.py") -> Path:
    path = tmp_path / name
    path.write_text(f"def get_classifier():\n    return {settings!r}\n")
    return path


def csv_settings(**overrides) -> dict:
    return {"data": {"csv": "comments.csv", "text_column": "comment", "label_column": "kind",
                     "positive": ["hate", "offensive"]},
            "lm": SMALL_LM, "fasttext": SMALL_FASTTEXT, "seed": 0, **overrides}


def run_command(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", "train-classifier", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_lm_backend_trains_deterministically_and_the_recipe_loads_it_as_model(tmp_path, capsys):
    write_csv(tmp_path / "comments.csv")
    config = write_config(tmp_path, csv_settings())
    rc, out, err = run_command(capsys, "--config", str(config), "--output", str(tmp_path / "tox.npz"))
    assert rc == 0 and err == ""
    printed = json.loads(out[: out.rindex("}") + 1])
    assert printed == json.loads((tmp_path / "tox.npz.report.json").read_text())
    assert out.splitlines()[-1].startswith("lm classifier: held-out ROC-AUC ")
    assert printed["backend"] == "lm" and printed["model"] == str(tmp_path / "tox.npz")
    assert printed["data"] == {"kind": "csv", "csv": str(tmp_path / "comments.csv"), "rows_used": 1200,
                               "positive": 600, "label_values": {"hate": 300, "neither": 600, "offensive": 300},
                               "rows_skipped": 0, "first_skipped": []}
    held = printed["heldout"]
    assert printed["train"] == {"n": 1096, "n_positive": 549} and (held["n"], held["n_positive"]) == (104, 51)
    # Measured: ROC-AUC 0.91491, precision 43/53, recall 43/51 at 0.5 (5% of the negatives hold a marker word too).
    assert held["roc_auc"] == pytest.approx(0.9149093599704032, abs=1e-9)
    assert (held["precision"], held["recall"]) == (pytest.approx(43 / 53), pytest.approx(43 / 51))
    assert printed["settings"]["seed"] == 0 and printed["settings"]["n_buckets"] == 1 << 14
    assert printed["train_seconds"] > 0
    train_from_file(config, tmp_path / "again.npz")
    first, again = LinearClassifier.load(tmp_path / "tox.npz"), LinearClassifier.load(tmp_path / "again.npz")
    assert np.array_equal(first.weights, again.weights) and first.bias == again.bias
    step = {"step": "toxicity", "model": str(tmp_path / "tox.npz"), "threshold": 0.5}
    validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": [step]}, base_dir=tmp_path)
    toxicity = build_step("toxicity", {k: v for k, v in step.items() if k != "step"})
    assert toxicity("word1 bad3 word2", "en") == "toxicity.score" and toxicity("word1 word2", "en") is None
    assert toxicity.model.score("word1 bad3") == first.score("word1 bad3")


def test_fasttext_backend_writes_the_same_bin_twice_and_steps_load_it(tmp_path, capsys):
    pytest.importorskip("fasttext", reason=FASTTEXT_REASON)
    write_csv(tmp_path / "comments.csv")
    config = write_config(tmp_path, csv_settings(backend="lm"))  # --backend overrides the file's choice
    rc, out, _ = run_command(capsys, "--config", str(config), "--output", str(tmp_path / "a.bin"),
                             "--backend", "fasttext")
    assert rc == 0
    rep = json.loads((tmp_path / "a.bin.report.json").read_text())
    assert rep["backend"] == "fasttext" and rep["settings"]["thread"] == 1 and rep["settings"]["dim"] == 8
    assert rep["train"] == {"n": 1096, "n_positive": 549} and rep["heldout"]["n"] == 104  # the same split as lm's
    assert rep["heldout"]["roc_auc"] == pytest.approx(0.9556048834628191, abs=1e-6)  # measured
    assert (rep["heldout"]["precision"], rep["heldout"]["recall"]) == (pytest.approx(50 / 53), pytest.approx(50 / 51))
    assert rep["model_bytes"] == (tmp_path / "a.bin").stat().st_size and out.splitlines()[-1].startswith("fasttext ")
    train_from_file(config, tmp_path / "b.bin", backend="fasttext")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    steps = [{"step": "quality_classifier", "model": str(tmp_path / "a.bin"), "label": "0", "threshold": 0.5},
             {"step": "toxicity", "model_path": str(tmp_path / "a.bin")}]  # the old name still works
    recipe = validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": steps}, base_dir=tmp_path)
    quality = build_step("quality_classifier", recipe.steps[0].kwargs)
    toxicity = build_step("toxicity", recipe.steps[1].kwargs)
    assert quality("word1 bad3 word2", "en") == "quality_classifier.low_score" and quality("word1 word2", "en") is None
    assert toxicity("word1 bad3 word2", "en") == "toxicity.score" and toxicity("word1 word2", "en") is None


def test_quality_classifier_from_reference_and_raw_sources(tmp_path):
    texts, labels = synthetic(400, seed=5)
    (tmp_path / "reference.jsonl").write_text("".join(json.dumps({"body": t}) + "\n"
                                                      for t, y in zip(texts, labels) if y == 0))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "crawl.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    config = write_config(tmp_path, {"data": {"reference": "reference.jsonl", "raw": ["raw"], "text_field": "body",
                                              "limit": 300}, "lm": SMALL_LM})
    rep = train_from_file(config, tmp_path / "quality.npz")
    assert rep["data"] == {"kind": "quality", "reference": [str(tmp_path / "reference.jsonl")],
                           "raw": [str(tmp_path / "raw")], "reference_available": 200, "raw_available": 300,
                           "used_per_class": 200}
    assert rep["train"] == {"n": 361, "n_positive": 181} and rep["heldout"]["n"] == 39
    assert rep["heldout"]["roc_auc"] == pytest.approx(0.8315789473684211, abs=1e-9)  # measured
    keep = QualityFilter(model=tmp_path / "quality.npz", threshold=0.5)
    assert keep.model_path == str(tmp_path / "quality.npz") and keep("word1 bad2 word3", None) is not None


def config_error(tmp_path: Path, settings: dict, output: str = "m.npz", backend: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        train_from_file(write_config(tmp_path, settings), tmp_path / output, backend)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_fields_give_one_line_errors_naming_them(tmp_path, capsys, monkeypatch):
    csv_path = write_csv(tmp_path / "comments.csv", n=40)
    data = csv_settings()["data"]
    assert config_error(tmp_path, csv_settings(sed=1)) == "classifier field 'sed' is unknown; did you mean 'seed'?"
    assert config_error(tmp_path, csv_settings(fasttext={"epochs": 3})) == \
        "classifier field 'fasttext.epochs' is unknown; did you mean 'epoch'?"
    assert config_error(tmp_path, csv_settings(data={**data, "text_colum": "x"})) == \
        "classifier field 'data.text_colum' is unknown; did you mean 'text_column'?"
    assert config_error(tmp_path, csv_settings(lm={"seed": 1})) == \
        "classifier field 'lm.seed' is unknown; the seed is the top-level field 'seed', which seeds either backend"
    assert config_error(tmp_path, csv_settings(backend="sklearn")) == \
        "classifier field 'backend': 'sklearn' is not one of ('lm', 'fasttext')"
    assert config_error(tmp_path, csv_settings(lm={"learning_rate": 0})) == \
        "classifier field 'lm.learning_rate': 0 must be > 0"
    assert config_error(tmp_path, {"backend": "lm"}).startswith("classifier field 'data' is required: a dict")
    assert config_error(tmp_path, csv_settings(data={**data, "text_column": "body"})) == (
        f"classifier field 'data.text_column': {csv_path} has no column 'body'; its columns: ['comment', 'kind']")
    assert config_error(tmp_path, csv_settings(data={**data, "positive": ["toxic"]})) == (
        f"classifier field 'data.positive': 'toxic' never occurs in column 'kind' of {csv_path}; "
        "its values: ['hate', 'neither', 'offensive']")
    assert config_error(tmp_path, csv_settings(), output="m.bin") == \
        f"--output {tmp_path / 'm.bin'}: backend 'lm' writes a .npz model; name it m.npz or pass --backend fasttext"
    assert config_error(tmp_path, csv_settings(), output="m.npz", backend="fasttext") == \
        f"--output {tmp_path / 'm.npz'}: backend 'fasttext' writes a .bin model; name it m.bin or pass --backend lm"
    rc, out, err = run_command(capsys, "--config", str(tmp_path / "clf.py"), "--output", str(tmp_path / "m.txt"))
    assert (rc, out) == (2, "") and err == \
        f"lm data: error: --output {tmp_path / 'm.txt'}: backend 'lm' writes a .npz model; name it m.npz\n"
    assert not (tmp_path / "m.txt").exists() and not (tmp_path / "m.bin").exists()
    assert config_error(tmp_path, {"data": {"reference": "ref.jsonl", "csv": "c.csv"}}) == \
        "classifier field 'data': give a labelled 'csv' or 'reference' and 'raw' sources, not both"
    assert config_error(tmp_path, {"data": {"reference": "ref.jsonl"}}) == \
        "classifier field 'data.raw' is required: a path or a non-empty list of paths, got None"
    assert config_error(tmp_path, {"data": {"reference": "r", "raw": "w", "text_column": "body"}}) == \
        ("classifier field 'data.text_column' is for a labelled CSV ('data.csv'); quality sources ('data.reference' "
         "and 'data.raw') take ['hf_split', 'limit', 'raw', 'reference', 'text_field']")
    assert config_error(tmp_path, csv_settings(data={**data, "csv": "gone.csv"})) == \
        f"classifier field 'data.csv': {tmp_path / 'gone.csv'} is not a file"
    with pytest.raises(DataError) as info:
        train_from_file(write_config(tmp_path, {"data": {"reference": "gone", "raw": "comments.csv"}}),
                        tmp_path / "q.npz")
    assert str(info.value) == (f"classifier field 'data.reference': {tmp_path / 'gone'}: no such file or directory "
                               "(nor an 'hf:NAME' dataset)")
    monkeypatch.setitem(sys.modules, "fasttext", None)  # what `import fasttext` sees when it is not installed
    with pytest.raises(DataError, match=r"^fastText models need the fasttext package \(.*\); pip install "):
        train_from_file(write_config(tmp_path, csv_settings(backend="fasttext")), tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_bad_csv_rows_are_named_by_file_and_line(tmp_path):
    csv_path = write_csv(tmp_path / "comments.csv", n=40)
    with open(csv_path, "a", encoding="utf-8") as f:
        f.write("one,two,three\n" + '"' + "x" * 200_000 + '",neither\n')
    with pytest.raises(DataError) as info:
        train_from_file(write_config(tmp_path, csv_settings()), tmp_path / "m.npz")
    assert str(info.value) == (f"{csv_path}:43: malformed CSV (field larger than field limit (131072)); "
                               "fix or remove that row")
    write_csv(csv_path, n=40)
    with open(csv_path, "a", encoding="utf-8") as f:
        f.write("one,two,three\n")
    settings = csv_settings(data={**csv_settings()["data"], "negative": ["neither"]})
    with pytest.raises(DataError) as info:  # 40 rows: the held-out 10% holds one class only
        train_from_file(write_config(tmp_path, settings), tmp_path / "m.npz")
    assert str(info.value).startswith(f"{csv_path}: the held-out split has ")
    rep = train_from_file(write_config(tmp_path, {**settings, "heldout_fraction": 0.5}), tmp_path / "m.npz")
    assert rep["data"]["rows_skipped"] == 1
    assert rep["data"]["first_skipped"] == [f"{csv_path}:42: 3 fields, the header has 2"]


def test_model_and_its_old_name_model_path(tmp_path):
    model = constant_model(tmp_path, 0.9)
    assert ToxicityFilter(model=model)("text", None) == ToxicityFilter(model_path=model)("text", None) == \
        ToxicityFilter(model)("text", None) == "toxicity.score"
    with pytest.raises(ArgumentError) as info:
        QualityFilter(model=model, model_path=model, threshold=0.5)
    assert str(info.value) == (f"give model or model_path (its old name), not both: model={str(model)!r}, "
                               f"model_path={str(model)!r}") and info.value.argument == "model_path"
    both = [{"step": "toxicity", "model": "a.npz", "model_path": "b.npz"}]
    with pytest.raises(ConfigError) as info:
        validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": both}, base_dir=tmp_path)
    assert str(info.value) == ("recipe field 'steps[0].model_path': give model or model_path (its old name), not "
                               "both: model='a.npz', model_path='b.npz' (step 'toxicity')")
    with pytest.raises(ConfigError) as info:
        validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": [{"step": "quality_classifier",
                                                                                   "threshold": 0.5}]},
                        base_dir=tmp_path)
    assert str(info.value) == ("recipe field 'steps[0].model': model is required: the classifier file (.npz from "
                               "lm, or a fastText .bin / .ftz) (step 'quality_classifier')")
    for make in (lambda: LanguageId(model="lid.bin", model_path="lid.bin"),
                 lambda: LanguageFilter({"en": 0.5}, model="lid.bin", model_path="lid.bin")):
        with pytest.raises(ArgumentError, match=r"^give model or model_path \(its old name\), not both: "
                                                r"model='lid.bin', model_path='lid.bin'$"):
            make()


def test_example_file_names_the_shared_davidson_columns():
    spec = load_classifier_spec(REPO / "experiments" / "data" / "toxicity_classifier.py")
    assert (spec.backend, spec.seed, spec.fasttext["thread"], spec.data["positive"]) == ("fasttext", 0, 1, ["0", "1"])
    if not Path(spec.data["csv"]).exists():
        pytest.skip(f"shared data absent: {spec.data['csv']}")
    loaded = load_labelled_csv(spec.data["csv"], text_column="tweet", label_column="class",
                               label_map={"0": 1, "1": 1}, other_label=0)
    assert loaded.label_values == {"0": 1430, "1": 19190, "2": 4163} and int(loaded.labels.sum()) == 20620
