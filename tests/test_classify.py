import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lm.data.classify import (
    CSV_FORMATS, BadWordScorer, HashedFeatures, LinearClassifier, QualityFilter, ToxicityFilter, TrainConfig,
    evaluate, load_labelled_csv, report, roc_auc, threshold_metrics, train_classifier, train_quality_classifier)
from lm.data.classify.metrics import average_ranks
from lm.data.classify.model import FORMAT_VERSION
from lm.data.classify.train import heldout_mask
from lm.data.read import DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOXICITY = DATA / "toxicity"
BADWORDS = DATA / "badwords"
REPO = Path(__file__).resolve().parents[1]


def needs(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared data absent: {missing}")


def synthetic(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts of 5-14 neutral words; every label-1 text and 5% of label-0 texts hold one marker word.

    A perfect reader of the marker gets ROC-AUC 1 - 0.05 / 2 = 0.975.
    """
    rng = np.random.default_rng(seed)
    neutral = [f"word{i}" for i in range(100)]
    markers = [f"bad{i}" for i in range(5)]
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(neutral, size=int(rng.integers(5, 15))))
        label = i % 2
        if label or rng.random() < 0.05:
            words[int(rng.integers(len(words)))] = str(rng.choice(markers))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels)


def constant_model(tmp_path: Path, score: float, name: str = "const.npz") -> Path:
    """A saved model that gives every text the same score."""
    features = HashedFeatures(n_buckets=64)
    bias = float(np.log(score / (1 - score)))
    path = tmp_path / name
    LinearClassifier(features, np.zeros(64, np.float32), bias).save(path)
    return path


# --- metrics -----------------------------------------------------------------

def test_roc_auc_with_ties_matches_hand_computation():
    # positives score 0.9, 0.5, 0.5; negatives 0.9, 0.1. Pairs won: tie (1/2) + 1 + 0 + 1 + 0 + 1 = 3.5 of 6.
    labels = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.9, 0.5, 0.1, 0.5])
    assert roc_auc(labels, scores) == pytest.approx(3.5 / 6)
    np.testing.assert_array_equal(average_ranks(np.array([3, 1, 3, 2])), [3.5, 1, 3.5, 2])
    assert roc_auc(labels, np.zeros(5)) == 0.5
    assert roc_auc(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3])) == 1.0
    assert roc_auc(np.array([0, 0, 1]), np.array([0.3, 0.2, 0.1])) == 0.0


def test_roc_auc_equals_pairwise_count_on_random_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 7, 300).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairwise, abs=1e-12)


def test_threshold_metrics_hand_computed_and_zero_division():
    labels = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.9, 0.5, 0.1, 0.5])
    m = threshold_metrics(labels, scores, 0.5)  # predicted 1,1,1,0,1: tp 3, fp 1, fn 0
    assert m == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "accuracy": 0.8})
    m = threshold_metrics(labels, scores, 0.95)  # nothing predicted positive
    assert m == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.4}
    r = report(labels, scores, 0.5)
    assert (r["n"], r["n_positive"], r["threshold"]) == (5, 3, 0.5)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc(np.array([0, 2]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match="one length"):
        threshold_metrics(np.array([0, 1]), np.array([0.2]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        roc_auc(np.array([0, 1]), np.array([0.2, np.nan]))


# --- features ----------------------------------------------------------------

def test_features_words_bigrams_and_cjk_ngrams():
    features = HashedFeatures()
    # hello, world, hello + bigrams (hello world), (world hello); "hello" occurs twice.
    assert len(features.hashes("Hello world, hello!")) == 5
    indices, values = features.vector("Hello world, hello!")
    assert sorted(np.round(values**2 * 7).astype(int).tolist()) == [1, 1, 1, 4]
    assert np.all(np.diff(indices) > 0)
    # Two CJK runs of two characters: 2 unigrams + 1 bigram each, no trigram, nothing across the comma.
    assert len(features.hashes("你好，世界")) == 6
    assert len(features.hashes("你好世界")) == 4 + 3 + 2
    # Character n-grams 1..2 of "ab": a, b, ab (plus the word "ab").
    assert len(HashedFeatures(char_ngrams=2).hashes("ab")) == 1 + 3
    indices, values = features.vector("  ... ")
    assert len(indices) == len(values) == 0
    assert features.matrix(["a b", "", "你"]).shape == (3, 1 << 20)


def test_feature_hash_is_fixed():
    # Saved models depend on these exact values; changing the hash silently breaks them.
    assert HashedFeatures().hashes("hello").tolist() == [12848726193126403318]
    assert HashedFeatures().vector("hello world")[0].tolist() == [327113, 550340, 945398]


def test_features_reject_bad_settings():
    with pytest.raises(ValueError, match="n_buckets"):
        HashedFeatures(n_buckets=1)
    with pytest.raises(ValueError, match="char_ngrams"):
        HashedFeatures(char_ngrams=-1)


# --- training, model file ------------------------------------------------------

def test_synthetic_training_separates_and_is_deterministic():
    texts, labels = synthetic(3000)
    model, rep = train_classifier(texts, labels, n_buckets=1 << 16)
    held = rep["heldout"]
    assert held["n"] == int(heldout_mask(texts, 0.1).sum()) > 200
    # Measured ROC-AUC 0.966, precision 0.924, recall 0.918 (the ceiling is 0.975).
    assert held["roc_auc"] > 0.93 and held["precision"] > 0.85 and held["recall"] > 0.85
    assert rep["train"]["n"] + held["n"] == 3000
    again, _ = train_classifier(texts, labels, n_buckets=1 << 16)
    np.testing.assert_array_equal(model.weights, again.weights)
    assert model.bias == again.bias
    other, _ = train_classifier(texts, labels, n_buckets=1 << 16, config=TrainConfig(seed=1))
    assert not np.array_equal(model.weights, other.weights)


def test_training_rejects_one_class_split():
    with pytest.raises(ValueError, match="both classes"):
        train_classifier(["a b", "c d", "e f"] * 10, [1] * 30)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    texts, labels = synthetic(600)
    model, rep = train_classifier(texts, labels, n_buckets=1 << 12, char_ngrams=2, config=TrainConfig(epochs=1))
    model.save(tmp_path / "m.npz")
    loaded = LinearClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.score_many(texts), model.score_many(texts))
    assert loaded.features == model.features and loaded.info == rep
    assert [loaded.score(t) for t in texts[:5]] == pytest.approx(model.score_many(texts[:5]).tolist(), abs=1e-12)
    assert pickle.loads(pickle.dumps(loaded)).score(texts[0]) == loaded.score(texts[0])


def test_corrupt_or_foreign_model_file_names_the_file(tmp_path):
    good = constant_model(tmp_path, 0.5)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    for path in (truncated, garbage, tmp_path / "missing.npz"):
        with pytest.raises(DataError, match=str(path)):
            LinearClassifier.load(path)
    with np.load(good) as archive:
        arrays = dict(archive)
    old = tmp_path / "old.npz"
    np.savez(old, **{**arrays, "metadata": np.array(str(arrays["metadata"]).replace(
        f'"format_version": {FORMAT_VERSION}', '"format_version": 999'))})
    with pytest.raises(DataError, match=f"{old}.*version 999.*retrain"):
        LinearClassifier.load(old)
    not_json = tmp_path / "not_json.npz"
    np.savez(not_json, **{**arrays, "metadata": np.array("{")})
    with pytest.raises(DataError, match=f"{not_json}: not a readable classifier model"):
        LinearClassifier.load(not_json)
    short = tmp_path / "short.npz"
    np.savez(short, **{**arrays, "weights": arrays["weights"][:10]})
    with pytest.raises(DataError, match=f"{short}.*n_buckets=64"):
        LinearClassifier.load(short)


def test_scores_identical_across_processes(tmp_path):
    texts, labels = synthetic(400)
    model, _ = train_classifier(texts, labels, n_buckets=1 << 12, config=TrainConfig(epochs=1))
    probe = ["bad3 word1 word2", "word7 word8", "混合 text 你好世界", ""]
    code = (
        "import sys, hashlib, numpy as np\n"
        "from lm.data.classify import HashedFeatures, TrainConfig, train_classifier\n"
        "from tests.test_classify import synthetic\n"
        "texts, labels = synthetic(400)\n"
        "model, _ = train_classifier(texts, labels, n_buckets=1 << 12, config=TrainConfig(epochs=1))\n"
        f"print(hashlib.sha256(model.weights.tobytes()).hexdigest(), model.score_many({probe!r}).tolist())\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    digest, scores = out.stdout.split(" ", 1)
    assert digest == hashlib.sha256(model.weights.tobytes()).hexdigest()
    assert eval(scores) == model.score_many(probe).tolist()


# --- datasets ------------------------------------------------------------------

def test_load_jigsaw_text_label_and_mapped_columns(tmp_path):
    jigsaw = tmp_path / "jigsaw.csv"
    jigsaw.write_text(
        "id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate\n"
        "a,hello there,0,0,0,0,0,0\n"
        'b,"you are\na fool",0,0,0,0,1,0\n'
        "c,unlabelled,-1,-1,-1,-1,-1,-1\n"
        "d,rude,1,0,1,0,0,0\n")
    data = load_labelled_csv(jigsaw)
    assert data.texts == ["hello there", "you are\na fool", "rude"]
    assert data.labels.tolist() == [0, 1, 1]
    assert data.skipped == [f"{jigsaw}:5: label '-1' not in ['0', '1']"]  # the quoted newline spans lines 3-4

    plain = tmp_path / "plain.csv"
    plain.write_text("label,text\n1,nasty\n0,nice\n0,  \n1,too,many\n")
    data = load_labelled_csv(plain)
    assert (data.texts, data.labels.tolist()) == (["nasty", "nice"], [1, 0])
    assert data.skipped == [f"{plain}:4: empty text", f"{plain}:5: 3 fields, the header has 2"]

    tweets = tmp_path / "davidson.csv"
    tweets.write_text("\ufeff,count,class,tweet\n0,3,2,fine day\n1,3,0,hateful\n2,3,1,offensive\n3,3,7,odd\n")
    data = load_labelled_csv(tweets, **CSV_FORMATS["davidson"])
    assert data.labels.tolist() == [0, 1, 1] and data.skipped == [f"{tweets}:5: label '7' not in ['0', '1', '2']"]


def test_load_csv_errors_name_the_file_and_fix(tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("body,score\nx,1\n")
    with pytest.raises(DataError, match=f"{odd}.*text_column"):
        load_labelled_csv(odd)
    with pytest.raises(DataError, match=f"{odd}: no column 'tweet'"):
        load_labelled_csv(odd, text_column="tweet", label_column="score")
    with pytest.raises(DataError, match=f"{odd}: no usable rows"):
        load_labelled_csv(odd, text_column="body", label_column="score", label_map={"0": 0})
    with pytest.raises(DataError, match="no such"):
        load_labelled_csv(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="both"):
        load_labelled_csv(odd, text_column="body")


# --- bad-word baseline ---------------------------------------------------------

def test_badword_scorer_whole_words_and_substrings(tmp_path):
    en = tmp_path / "en.txt"
    en.write_text("ass\n2 girls 1 cup\nbad word\n\n")
    scorer = BadWordScorer(en)
    assert scorer("a class act, passing grade") == 0
    assert scorer("What an ASS! ass again, and a bad word") == 2
    assert scorer("2 girls 1 cup") == 1
    zh = tmp_path / "zh.txt"
    zh.write_text("傻逼\n他妈\n")
    scorer = BadWordScorer(zh, whole_word=False)
    assert scorer("你这个傻逼，他妈的") == 2 and scorer("你好") == 0
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        BadWordScorer(tmp_path / "empty.txt")


# --- filters -------------------------------------------------------------------

def test_pareto_keep_rate_matches_analytic_expectation(tmp_path):
    # GPT-3's rule keeps a document when pareto(alpha) > 1 - score: probability (2 - score) ** -alpha.
    texts = [f"document number {i}" for i in range(4000)]
    for score in (0.3, 0.7, 0.9):
        keep = QualityFilter(constant_model(tmp_path, score), pareto_alpha=9)
        verdicts = [keep(t, "en") for t in texts]
        rate = verdicts.count(None) / len(texts)
        expected = (2 - score) ** -9  # 0.0084, 0.0943, 0.4241
        assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / len(texts)) + 1e-3
        assert set(verdicts) == {None, "quality_classifier.pareto"}
    assert verdicts[:500] == [keep(t, "en") for t in texts[:500]]  # deterministic per text
    reseeded = QualityFilter(constant_model(tmp_path, score), pareto_alpha=9, seed=1)
    assert [reseeded(t, "en") for t in texts[:500]] != verdicts[:500]


def test_filter_decisions_reasons_and_languages(tmp_path):
    high, low = constant_model(tmp_path, 0.8, "high.npz"), constant_model(tmp_path, 0.2, "low.npz")
    assert QualityFilter(high, threshold=0.5)("text", None) is None
    assert QualityFilter(low, threshold=0.5)("text", None) == "quality_classifier.low_score"
    assert ToxicityFilter(high)("text", "en") == "toxicity.score"
    assert ToxicityFilter(low)("text", "en") is None
    english_only = ToxicityFilter(high, threshold=0.5, languages=["en"])
    assert english_only("text", "zh") is None and english_only("text", "en") == "toxicity.score"
    with pytest.raises(ValueError, match="language-id"):
        english_only("text", None)
    restored = pickle.loads(pickle.dumps(QualityFilter(high, pareto_alpha=9, seed=3)))
    assert [restored(f"t{i}", "en") for i in range(50)] == \
        [QualityFilter(high, pareto_alpha=9, seed=3)(f"t{i}", "en") for i in range(50)]
    with pytest.raises(ValueError, match="exactly one"):
        QualityFilter(high)
    with pytest.raises(ValueError, match="exactly one"):
        QualityFilter(high, threshold=0.5, pareto_alpha=9)
    with pytest.raises(ValueError, match="pareto_alpha"):
        QualityFilter(high, pareto_alpha=0)
    with pytest.raises(ValueError, match="threshold"):
        ToxicityFilter(high, threshold=1.5)


# --- real data -----------------------------------------------------------------

def wikitext_paragraphs(name: str) -> list[str]:
    lines = (DATA / "en" / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if len(line.split()) > 40 and not line.strip().startswith("=")]


def test_quality_classifier_tells_prose_from_word_salad(tmp_path):
    needs(DATA / "en" / "wikitext2_valid.tokens.txt", DATA / "en" / "wikitext2_test.tokens.txt")
    reference = wikitext_paragraphs("wikitext2_valid.tokens.txt")
    rng = np.random.default_rng(0)
    unseen = wikitext_paragraphs("wikitext2_test.tokens.txt")
    salad = [" ".join(rng.permutation(p.split())) for p in unseen]
    model, rep = train_quality_classifier(reference, salad[:1200], n_buckets=1 << 18)
    assert rep["balance"] == {"reference_available": len(reference), "raw_available": 1200, "used_per_class": 1200}
    assert rep["heldout"]["roc_auc"] > 0.98  # measured 0.9994
    model.save(tmp_path / "quality.npz")
    keep = QualityFilter(tmp_path / "quality.npz", threshold=0.5)
    prose_kept = np.mean([keep(p, "en") is None for p in unseen[1200:]])
    salad_kept = np.mean([keep(p, "en") is None for p in salad[1200:]])
    assert prose_kept > 0.9 and salad_kept < 0.15  # measured 0.961 and 0.091


def test_english_toxicity_beats_badword_baseline():
    needs(TOXICITY / "davidson_labeled_data.csv", BADWORDS / "en.txt")
    data = load_labelled_csv(TOXICITY / "davidson_labeled_data.csv", **CSV_FORMATS["davidson"])
    assert len(data.texts) == 24783 and not data.skipped
    model, rep = train_classifier(data.texts, data.labels)
    heldout = heldout_mask(data.texts, 0.1)
    scorer = BadWordScorer(BADWORDS / "en.txt")
    baseline = report(data.labels[heldout], scorer.score_many([t for t, h in zip(data.texts, heldout) if h]), 1)
    # Measured: classifier ROC-AUC 0.9797 (P 0.943, R 0.983); bad words 0.8706 (P 0.992, R 0.766).
    assert rep["heldout"]["roc_auc"] > 0.96
    assert rep["heldout"]["roc_auc"] > baseline["roc_auc"] + 0.05


def test_chinese_toxicity_train_split_to_test_split_beats_badword_baseline():
    needs(TOXICITY / "cold_zh_train.csv", TOXICITY / "cold_zh_test.csv", BADWORDS / "zh.txt")
    train = load_labelled_csv(TOXICITY / "cold_zh_train.csv", **CSV_FORMATS["cold"])
    test = load_labelled_csv(TOXICITY / "cold_zh_test.csv", **CSV_FORMATS["cold"])
    model, _ = train_classifier(train.texts, train.labels)
    classifier = evaluate(model, test.texts, test.labels)
    baseline = report(test.labels, BadWordScorer(BADWORDS / "zh.txt", whole_word=False).score_many(test.texts), 1)
    # Measured: classifier ROC-AUC 0.8775 (P 0.730, R 0.797); bad words 0.5599 (P 0.604, R 0.209).
    assert classifier["roc_auc"] > 0.85
    assert classifier["roc_auc"] > baseline["roc_auc"] + 0.2
