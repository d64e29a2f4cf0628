"""fastText models in the classifier steps, in training and in language id (lm.data.classify.fasttext_model)."""

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

fasttext = pytest.importorskip("fasttext", reason="fastText tests need the optional fasttext-wheel package "
                                                   "(pip install 'lm[fasttext]')")

from lm.cli import main  # noqa: E402
from lm.config import ConfigError  # noqa: E402
from lm.data.classify import QualityFilter, ToxicityFilter, train_classifier  # noqa: E402
from lm.data.classify.fasttext_model import FastTextConfig, FastTextModel, train_fasttext  # noqa: E402
from lm.data.langid import LanguageFilter, LanguageId  # noqa: E402
from lm.data.prepare.output import iter_clean, read_jsonl_zst  # noqa: E402
from lm.data.prepare.recipe import validate_recipe  # noqa: E402
from lm.data.read import DataError  # noqa: E402
from tests.test_classify import constant_model, synthetic  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = FastTextConfig(dim=8, bucket=4096, epoch=5, minn=0, maxn=0)  # small and fast; thread=1, seed=0


@pytest.fixture(scope="module")
def toxic_bin(tmp_path_factory) -> Path:
    """A tiny fastText toxicity model: label 1 for texts holding a marker word (bad0..bad4)."""
    texts, labels = synthetic(2000)
    model = train_fasttext(texts, [str(y) for y in labels], TINY)
    path = tmp_path_factory.mktemp("ft") / "toxic.bin"
    model.save(path)
    return path


def test_training_is_deterministic_and_scores_match_fasttext(toxic_bin, tmp_path):
    texts, labels = synthetic(2000)
    again = tmp_path / "again.bin"
    train_fasttext(texts, [str(y) for y in labels], TINY).save(again)
    assert again.read_bytes() == toxic_bin.read_bytes()  # thread=1 and a fixed seed: the same bytes
    model = FastTextModel(toxic_bin, "1")
    assert model.labels == ["__label__1", "__label__0"] and model.label == "__label__1"
    assert FastTextModel(toxic_bin, "__label__0").label == "__label__0"
    probe = ["word1 bad3 word2", "word4 word5\nword6", ""]
    raw = fasttext.load_model(str(toxic_bin))
    expected = [dict((label, p) for p, label in raw.f.predict(t.replace("\n", " ") + "\n", -1, 0.0, "strict"))
                ["__label__1"] - 1e-5 for t in probe]
    np.testing.assert_allclose(model.score_many(probe), np.clip(expected, 0, 1), rtol=0, atol=1e-12)
    assert model.score_many(probe)[0] > 0.9 > 0.1 > model.score_many(probe)[1]
    both = model.probabilities(probe[0])
    assert sum(both.values()) == pytest.approx(1.0, abs=1e-6)
    restored = pickle.loads(pickle.dumps(model))  # reloads the .bin from its path
    assert restored.score_many(probe).tolist() == model.score_many(probe).tolist()


def test_train_classifier_fasttext_backend_reports_heldout_metrics(tmp_path):
    texts, labels = synthetic(3000)
    model, rep = train_classifier(texts, labels, backend="fasttext", fasttext_config=TINY)
    # Measured on the 290 held-out texts: ROC-AUC 0.9849, precision 0.973, recall 1.0.
    assert rep["heldout"]["roc_auc"] > 0.93 and rep["heldout"]["precision"] > 0.85
    assert rep["settings"]["backend"] == "fasttext" and rep["settings"]["thread"] == 1
    model.save(tmp_path / "m.bin")
    held = [t for t, y in zip(texts, labels)][:50]
    assert ToxicityFilter(tmp_path / "m.bin").model.score_many(held).tolist() == model.score_many(held).tolist()
    with pytest.raises(ValueError, match=r"backend='sklearn': must be one of \('lm', 'fasttext'\)"):
        train_classifier(texts, labels, backend="sklearn")


def test_bad_model_files_and_labels_give_one_line_errors(toxic_bin, tmp_path):
    data = toxic_bin.read_bytes()
    cases = {"missing.bin": None, "empty.bin": b"", "garbage.bin": b"this is not a model" * 10,
             "half.bin": data[: len(data) // 2], "long.bin": data + b"\0" * 8, "header.ftz": data[:100]}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    expected = {
        "missing.bin": "no such fastText model file",
        "empty.bin": "not a fastText model, or a truncated one (the file ends inside the header); "
                     "download or train it again",
        "garbage.bin": "not a fastText model, or a truncated one (magic 1936287860 version 544434464, expected "
                       "793712314 with a version in (11, 12)); download or train it again",
        "half.bin": "not a fastText model, or a truncated one (the input matrix needs",
        "long.bin": f"{len(data) + 8} bytes, but its fastText layout ends at byte {len(data)}; the file is corrupt "
                    "or truncated; download or train it again",
        "header.ftz": "not a fastText model, or a truncated one (the file ends inside the dictionary)",
    }
    for name, message in expected.items():
        with pytest.raises(DataError) as info:
            FastTextModel(tmp_path / name, "1")
        assert str(info.value).startswith(f"{tmp_path / name}: {message}") and "\n" not in str(info.value)
    with pytest.raises(DataError) as info:
        QualityFilter(toxic_bin, threshold=0.5, label="hq")
    assert str(info.value) == f"{toxic_bin}: no label 'hq'; the model's labels are __label__1, __label__0"
    words = tmp_path / "words.txt"
    words.write_text("some words to embed and more words to embed\n" * 20)
    fasttext.train_unsupervised(str(words), dim=4, epoch=1, minCount=1, thread=1, bucket=100, verbose=0).save_model(
        str(tmp_path / "vectors.bin"))
    with pytest.raises(DataError) as info:
        FastTextModel(tmp_path / "vectors.bin", "1")
    assert str(info.value) == (f"{tmp_path / 'vectors.bin'}: not a fastText model, or a truncated one (model type 2 "
                               "is a word-vector model, not a supervised classifier); download or train it again")
    with pytest.raises(ValueError, match=r"label='hq' applies to fastText models \(.bin / .ftz\); .*const.npz"):
        ToxicityFilter(constant_model(tmp_path, 0.5), label="hq")


def test_missing_fasttext_package_says_how_to_install(toxic_bin, monkeypatch):
    monkeypatch.setitem(sys.modules, "fasttext", None)  # what `import fasttext` sees when it is not installed
    with pytest.raises(DataError) as info:
        ToxicityFilter(toxic_bin)
    assert str(info.value).startswith("fastText models need the fasttext package (")
    assert str(info.value).endswith("); pip install 'lm[fasttext]' (the fasttext-wheel package)")


def test_filters_score_with_a_fasttext_model_and_report_it(toxic_bin):
    toxic = ToxicityFilter(toxic_bin, threshold=0.5, languages=["en"])
    score, reason = toxic.judge("word1 bad2 word3", "en")
    assert score > 0.5 and reason == "toxicity.score" and toxic("word1 bad2 word3", "en") == "toxicity.score"
    assert toxic.judge("word1 bad2 word3", "zh") == (None, None)  # a language it does not judge
    clean_score, clean_reason = toxic.judge("word1 word2 word3", "en")
    assert clean_score < 0.5 and clean_reason is None
    keep = QualityFilter(toxic_bin, label="0", pareto_alpha=9, seed=1)
    texts = [f"word{i} word{i + 1}" + (f" bad{i % 5}" if i % 2 else "") for i in range(200)]
    verdicts = [keep(t, "en") for t in texts]  # label 0 (no marker) scores near 1: Pareto keeps those
    assert verdicts[::2] == [None] * 100 and verdicts[1::2].count("quality_classifier.pareto") > 95
    restored = pickle.loads(pickle.dumps(keep))
    assert [restored(t, "en") for t in texts] == verdicts


def shared_lines(path: Path, n: int, column: int | None = None) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if column is not None:  # a CSV with label,review: keep the text after the first comma
        lines = [line.split(",", column)[-1] for line in lines[1:]]
    return [line for line in lines if len(line) > 20 and not line.startswith("=")][:n]


def test_fasttext_language_id_trained_on_shared_english_and_chinese(tmp_path):
    en_path, zh_path = DATA / "en" / "wikitext2_valid.tokens.txt", DATA / "zh" / "chnsenticorp_htl_all.csv"
    if not (en_path.exists() and zh_path.exists()):
        pytest.skip(f"shared data absent: {en_path} or {zh_path}")
    en, zh = shared_lines(en_path, 800), shared_lines(zh_path, 800, column=1)
    model = train_fasttext(en[:600] + zh[:600], ["en"] * 600 + ["zh"] * 600,
                           FastTextConfig(dim=8, bucket=20000, epoch=5, minn=1, maxn=3))
    model.save(tmp_path / "lid.bin")
    langid = LanguageId(model_path=str(tmp_path / "lid.bin"))
    assert langid.labels == ["en", "zh"]
    answers = [langid(t) for t in en[600:] + zh[600:]]
    truth = ["en"] * len(en[600:]) + ["zh"] * len(zh[600:])
    accuracy = np.mean([lang == want for (lang, _), want in zip(answers, truth)])
    assert accuracy > 0.98  # measured 1.0 on 400 unseen lines
    assert all(0.5 <= confidence <= 1.0 for _, confidence in answers)
    assert langid("12345 !!!") == ("zxx", 1.0)
    assert LanguageId(["zh"], model_path=str(tmp_path / "lid.bin"))(en[700]) == ("zh", 1.0)  # renormalised
    assert LanguageFilter({"en": 0.6}, model_path=str(tmp_path / "lid.bin"))(zh[700]) == "language.zh"
    with pytest.raises(ValueError, match=r"lid.bin has no label for \['fr'\]; its codes: en, zh"):
        LanguageId(["fr"], model_path=str(tmp_path / "lid.bin"))
    restored = pickle.loads(pickle.dumps(langid))
    assert restored(en[650]) == langid(en[650])


def write_recipe(tmp_path: Path, steps: list[dict]) -> Path:
    docs = tmp_path / "docs.jsonl"
    texts, _ = synthetic(120, seed=3)
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    recipe = tmp_path / "recipe.py"
    recipe.write_text(f"def get_recipe():\n    return {{'sources': [{{'name': 'web', 'path': 'docs.jsonl'}}], "
                      f"'steps': {steps!r}, 'tokenizer': None}}\n")
    return recipe


def test_recipe_with_fasttext_bin_runs_end_to_end(toxic_bin, tmp_path, capsys):
    # The first step only scores (threshold 0 keeps all); score_filter drops by the stored score;
    # toxicity scores again and finds nothing left to drop.
    steps = [{"step": "quality_classifier", "model": str(toxic_bin), "label": "1", "threshold": 0.0},
             {"step": "score_filter", "score": "quality_classifier", "maximum": 0.5},
             {"step": "toxicity", "model_path": str(toxic_bin), "label": "__label__1", "threshold": 0.5}]
    out = tmp_path / "run"
    assert main(["data", "prepare", "--config", str(write_recipe(tmp_path, steps)), "--output", str(out)]) == 0
    model = FastTextModel(toxic_bin, "1")
    clean = list(iter_clean(out / "clean"))
    removed = [o for p in sorted((out / "removed").glob("*.zst")) for o in read_jsonl_zst(p)]
    assert len(clean) + len(removed) == 120
    assert len(removed) == sum(model.score(t) > 0.5 for t in synthetic(120, seed=3)[0]) == 62  # 60 label 1, 2 label 0
    assert {o["reason"] for o in removed} == {"score_filter.high"}
    for record in clean:  # every classifier's score is kept in the record
        assert record.meta["scores"] == {"quality_classifier": model.score(record.text),
                                         "toxicity": model.score(record.text)}
        assert record.meta["scores"]["toxicity"] <= 0.5
    rep = json.loads((out / "report.json").read_text())
    hist = rep["histograms"]["scores"]
    assert list(hist) == ["quality_classifier", "toxicity"]
    assert sum(hist["quality_classifier"]["kept"]) == 120 and sum(hist["quality_classifier"]["dropped"]) == 0
    assert sum(hist["toxicity"]["kept"]) == len(clean) and sum(hist["toxicity"]["dropped"]) == 0
    assert sum(hist["quality_classifier"]["kept"][10:]) == 62  # the same 62 documents score above 0.5
    assert len(rep["histograms"]["score_bin_edges"]) == 21
    assert (out / "plots" / "scores.png").stat().st_size > 1000
    assert "| quality_classifier | 120 | 120 | 0 |" in (out / "report.md").read_text()


def test_recipe_errors_name_the_model_file_label_and_step(toxic_bin, tmp_path):
    bad_label = [{"step": "toxicity", "model": str(toxic_bin), "label": "hq"}]
    with pytest.raises(ConfigError) as info:
        validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": bad_label}, base_dir=tmp_path)
    assert str(info.value).startswith("recipe field 'steps[0]': step 'toxicity' rejected its arguments")
    assert str(info.value).endswith(f"{toxic_bin}: no label 'hq'; the model's labels are __label__1, __label__0")
    missing = [{"step": "quality_classifier", "model_path": str(tmp_path / "gone.ftz"), "threshold": 0.5}]
    with pytest.raises(ConfigError, match=f"{tmp_path / 'gone.ftz'}: no such fastText model file"):
        validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": missing}, base_dir=tmp_path)
    early = [{"step": "score_filter", "score": "toxicity", "minimum": 0.5},
             {"step": "toxicity", "model_path": str(toxic_bin)}]
    with pytest.raises(ConfigError) as info:
        validate_recipe({"sources": [{"name": "a", "path": "x.jsonl"}], "steps": early}, base_dir=tmp_path)
    assert str(info.value) == ("recipe field 'steps[0].score': 'toxicity' is not a step before this one; a "
                               "score_filter reads the score a classifier step stored earlier (steps so far: [])")
