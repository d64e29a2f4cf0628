"""Recipe validation: every error names the field and the fix; defaults fill the rest."""

from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.data.prepare.recipe import DEFAULTS, load_recipe, validate_recipe
from lm.data.prepare.steps import known_steps

ROOT = Path(__file__).resolve().parents[1]


def recipe(**overrides) -> dict:
    return {"sources": [{"name": "web", "path": "data"}], **overrides}


@pytest.mark.parametrize("raw, message", [
    ({"sources": []}, "'sources' must be a non-empty list"),
    (recipe(step=[]), "'step' is unknown; did you mean 'steps'"),
    (recipe(output={"docs_per_shrad": 5}), "'output.docs_per_shrad' is unknown; did you mean 'docs_per_shard'"),
    (recipe(execution={"docs_per_task": 0}), "'execution.docs_per_task': 0 must be a positive integer"),
    (recipe(tokenizer={"model_type": "wordpiece"}), "'tokenizer.model_type': 'wordpiece' is not one of"),
    (recipe(tokens={"group_by": "file"}), "'tokens.group_by': 'file' is not one of"),
    ({"sources": [{"path": "x"}]}, "'sources[0].name' is required"),
    ({"sources": [{"name": "a b", "path": "x"}]}, "may hold only letters, digits"),
    ({"sources": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "'sources[1].name': 'a' is used by two"),
    ({"sources": [{"name": "a", "path": "x", "format": "xml"}]}, "'sources[0].format': 'xml' is not one of"),
    ({"sources": [{"name": "a", "path": "x", "colum": "t"}]}, "'sources[0].colum' is unknown"),
    (recipe(steps=[{"step": "gopher"}]), "'steps[0]': unknown step 'gopher'; known steps: badwords, c4"),
    (recipe(steps=["normalize"]), "'steps[0]' must be a dict with a 'step' key"),
    (recipe(steps=[{"step": "exact_dedup"}, {"step": "exact_dedup"}]), "step 'exact_dedup' appears twice"),
    (recipe(steps=[{"step": "gopher_quality", "min_wrds": 3}]), "'steps[0]': step 'gopher_quality' does not take"),
    (recipe(steps=[{"step": "minhash_dedup", "bands": 10, "rows": 10}]), "bands x rows = 10 x 10 = 100 must equal"),
    (recipe(steps=[{"step": "no.such.module:Step"}]), "needs module no.such.module, which cannot be imported"),
    (recipe(mixture={"weights": {"web": -1}}), "'mixture':"),
    (recipe(output={"removed_text_chars": object()}), "plain JSON values"),
])
def test_errors_name_the_field(raw, message):
    with pytest.raises(ConfigError, match=None) as err:
        validate_recipe(raw, base_dir=Path("/tmp"))
    assert message in str(err.value), str(err.value)


def test_defaults_and_relative_paths():
    r = validate_recipe(recipe(output={"docs_per_shard": 5}, tokenizer=None), base_dir=Path("/base"))
    assert r.sources[0].path == "/base/data" and r.sources[0].format == "auto" and r.sources[0].csv_column == "text"
    assert r.settings["output"] == {**DEFAULTS["output"], "docs_per_shard": 5}
    assert r.settings["tokenizer"] is None and r.steps == ()


def test_registry_lists_every_step_of_issue_4():
    assert set(known_steps()) >= {"normalize", "langid", "language", "gopher_quality", "gopher_repetition",
                                  "c4_lines", "c4", "fineweb", "badwords", "quality_classifier", "toxicity", "pii",
                                  "exact_dedup", "minhash_dedup", "line_dedup"}


def test_recipe_files_load(tmp_path):
    path = tmp_path / "r.py"
    path.write_text("def get_recipe():\n    return {'sources': [{'name': 'a', 'path': 'in.jsonl'}]}\n")
    assert load_recipe(path).sources[0].path == str(tmp_path / "in.jsonl")
    (tmp_path / "bad.py").write_text("def get_config():\n    return {}\n")
    with pytest.raises(ConfigError, match="defines no get_recipe"):
        load_recipe(tmp_path / "bad.py")
    assert [s.name for s in load_recipe(ROOT / "experiments" / "data" / "tiny_demo.py").steps][-2:] == [
        "exact_dedup", "minhash_dedup"]
