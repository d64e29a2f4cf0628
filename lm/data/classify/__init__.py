"""Classifier filters for data preparation: hashed-feature logistic regression for quality and toxicity.

Modules: `features` (hashed n-grams), `model` (classifier, training, file),
`metrics` (ROC-AUC, precision, recall), `datasets` (labelled CSVs), `train`
(training with a held-out report), `filters` (pipeline filters) and
`badwords` (the word-list baseline).
"""

from lm.data.classify.badwords import BadWordScorer
from lm.data.classify.datasets import CSV_FORMATS, LabelledTexts, load_labelled_csv
from lm.data.classify.features import HashedFeatures
from lm.data.classify.filters import QualityFilter, ToxicityFilter
from lm.data.classify.metrics import report, roc_auc, threshold_metrics
from lm.data.classify.model import LinearClassifier, TrainConfig, fit
from lm.data.classify.train import evaluate, train_classifier, train_quality_classifier

__all__ = [
    "BadWordScorer", "CSV_FORMATS", "HashedFeatures", "LabelledTexts", "LinearClassifier", "QualityFilter",
    "ToxicityFilter", "TrainConfig", "evaluate", "fit", "load_labelled_csv", "report", "roc_auc",
    "threshold_metrics", "train_classifier", "train_quality_classifier",
]

