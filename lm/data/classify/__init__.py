"""Classifier filters for data preparation: hashed-feature logistic regression or fastText, for quality and toxicity.

Modules: `features` (hashed n-grams), `model` (classifier, training, file),
`fasttext_model` (fastText models: load, score a label, train), `metrics`
(ROC-AUC, precision, recall), `datasets` (labelled CSVs), `train` (training
with a held-out report, either backend), `train_config` and `train_command`
(`lm data train-classifier`: a training file in, a model and its report out),
`filters` (pipeline filters), `model_file` (their `model` argument) and
`badwords` (the word-list baseline).
"""

from lm.data.classify.badwords import BadWordScorer
from lm.data.classify.datasets import CSV_FORMATS, LabelledTexts, load_labelled_csv
from lm.data.classify.fasttext_model import FastTextConfig, FastTextModel, train_fasttext
from lm.data.classify.features import HashedFeatures
from lm.data.classify.filters import QualityFilter, ScoreFilter, ToxicityFilter, load_classifier
from lm.data.classify.metrics import report, roc_auc, threshold_metrics
from lm.data.classify.model import LinearClassifier, TrainConfig, fit
from lm.data.classify.train import BACKENDS, evaluate, train_classifier, train_quality_classifier

__all__ = [
    "BACKENDS", "BadWordScorer", "CSV_FORMATS", "FastTextConfig", "FastTextModel", "HashedFeatures", "LabelledTexts",
    "LinearClassifier", "QualityFilter", "ScoreFilter", "ToxicityFilter", "TrainConfig", "evaluate", "fit",
    "load_classifier", "load_labelled_csv", "report", "roc_auc", "threshold_metrics", "train_classifier",
    "train_fasttext", "train_quality_classifier",
]

