"""Evaluation metrics on plain data (labels, scores, predictions, references), never a
model: CodeReviewer-compatible BLEU-4 and exact match for generated text, and review
necessity (ROC/PR AUC with paired bootstrap intervals, the metrics at a threshold, top-k
precision) judged beside two baselines, the majority class and LApredict.

:mod:`training.evaluate` runs a bundle to get the predictions; this module judges them.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.calibration import hunk_line_counts, lapredict_fit, weighted_aucs

# --------------------------------------------------------------------------------------------
# BLEU-4, exactly as CodeReviewer computes it
# --------------------------------------------------------------------------------------------
#
# CodeReviewer's ``bleu_fromstr`` (CodeReviewer/code/evaluator/smooth_bleu.py in
# github.com/microsoft/CodeBERT) chains three tokenizers; each step below is one of theirs, in
# their order, because each changes the score: NLTK's wordpunct tokenization; stop-word
# removal on those tokens (case-sensitive, before lower-casing); lower-casing and splitting
# every punctuation character apart; then the NIST mteval-v11a normalisation of the MOSES
# ``bleu.py`` it is built on. The mteval steps that cannot match after the punctuation split
# (``<skipped>`` tags, hyphenated line ends, XML entities) are left out.
#
# ``\w`` is that of Python's ``re``, as in the NLTK CodeReviewer ran (3.7, 2022). Recent NLTK
# (3.10.4 checked) tokenizes with the ``regex`` engine, whose ``\w`` differs on a few characters
# (``½``, superscripts): text holding them scores differently there.

_WORDPUNCT = re.compile(r"\w+|[^\w\s]+")  # nltk.wordpunct_tokenize
_WORD_OR_PUNCT_CHAR = re.compile(r"\w+|[^\s\w]")  # CodeReviewer's splitPuncts
_MTEVAL_RULES = [
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 "),  # punctuation, apostrophe excepted
        (r"([^0-9])([\.,])", r"\1 \2 "),  # period and comma unless preceded by a digit
        (r"([\.,])([^0-9])", r" \1 \2"),  # period and comma unless followed by a digit
        (r"([0-9])(-)", r"\1 \2 "),  # dash preceded by a digit
    )
]
_BLEU_ORDER = 4


def load_stopwords(path: Path | str) -> set[str]:
    """The stop words of a one-word-per-line file (CodeReviewer's ``stopwords.txt``)."""
    text = Path(path).read_text(encoding="utf-8")
    return {word.strip() for word in text.splitlines() if word.strip()}


def bleu_tokens(text: str, stopwords: set[str] | None = None) -> list[str]:
    """The tokens CodeReviewer's BLEU compares, after removing ``stopwords`` if given."""
    words = _WORDPUNCT.findall(text)
    if stopwords:
        words = [word for word in words if word not in stopwords]
    text = " ".join(_WORD_OR_PUNCT_CHAR.findall(" ".join(words).lower()))
    text = f" {text} ".lower()
    for pattern, replacement in _MTEVAL_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def _ngram_counts(tokens: Sequence[str]) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, _BLEU_ORDER + 1):
        for start in range(len(tokens) - n + 1):
            counts[tuple(tokens[start : start + n])] += 1
    return counts


def sentence_bleu4(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """Smoothed BLEU-4 of one tokenized prediction (0-1): add-one smoothing for n > 1 and
    the MOSES brevity penalty ``min(0, 1 - (r + 1) / (c + 1))`` in log space.

    The arithmetic follows ``score_cooked`` step by step so that averages agree with
    CodeReviewer's to the last digit; an empty prediction of an empty reference scores 1.
    """
    reference_counts = _ngram_counts(reference)
    correct = [0] * _BLEU_ORDER
    for ngram, count in _ngram_counts(prediction).items():
        correct[len(ngram) - 1] += min(reference_counts.get(ngram, 0), count)
    tiny = sys.float_info.min  # keeps log() finite where nothing matched
    log_bleu = 0.0
    for k in range(_BLEU_ORDER):
        guess = max(len(prediction) - k, 0)
        smooth = 1 if k > 0 else 0
        log_bleu += math.log(correct[k] + smooth + tiny) - math.log(guess + smooth + tiny)
    log_bleu /= float(_BLEU_ORDER)
    log_bleu += min(0, 1 - float(len(reference) + 1) / (len(prediction) + 1))
    return math.exp(log_bleu)


def _check_pairs(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions for {len(references)} references; "
            "they must pair up one to one"
        )
    if not len(predictions):
        raise ValueError("nothing to score: no predictions")


def bleu4(
    predictions: Sequence[str], references: Sequence[str], stopwords: set[str] | None = None
) -> float:
    """Smoothed sentence BLEU-4 averaged over the set, 0-100 rounded to 2 decimals.

    Equal to CodeReviewer's ``bleu_fromstr(predictions, references, rmstop=...)``; pass
    ``stopwords`` (see :func:`load_stopwords`) for their ``rmstop=True``.
    """
    _check_pairs(predictions, references)
    total = 0.0
    for prediction, reference in zip(predictions, references, strict=True):
        total += sentence_bleu4(
            bleu_tokens(prediction, stopwords), bleu_tokens(reference, stopwords)
        )
    return round(total * 100.0 / len(predictions), 2)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Percentage (0-100, 2 decimals) of predictions equal to their reference once runs of
    whitespace are collapsed and the ends trimmed."""
    _check_pairs(predictions, references)
    hits = sum(
        " ".join(prediction.split()) == " ".join(reference.split())
        for prediction, reference in zip(predictions, references, strict=True)
    )
    return round(100.0 * hits / len(predictions), 2)


# --------------------------------------------------------------------------------------------
# Review necessity (binary: 1 = "yes", needs review)
# --------------------------------------------------------------------------------------------

#: Bootstrap resamples behind every interval; the same resamples for every scorer of a split
#: (paired), so differences get intervals too.
BOOTSTRAP = 1000
#: "Top k" precision counts: the k highest scores, and the highest 5% of the split.
TOP_K = 10
TOP_SHARE = 0.05


@dataclass(frozen=True)
class ClassificationMetrics:
    """Review-necessity metrics of one scorer on one split.

    Precision, recall and F1 are those of the positive class "yes" and, like accuracy and
    ROC AUC, fractions in 0-1. A hunk counts as flagged when its score is at least
    ``threshold``. ``roc_auc`` is None when the split holds only one class.
    """

    precision: float
    recall: float
    f1: float
    accuracy: float
    roc_auc: float | None
    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def support_yes(self) -> int:
        return self.true_positives + self.false_negatives

    @property
    def support_no(self) -> int:
        return self.false_positives + self.true_negatives


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """Precision and recall of "yes" at each distinct score, highest threshold first."""

    thresholds: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]


def _labels_and_scores(
    labels: Sequence[int], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    _check_pairs(scores, labels)
    y = np.asarray(labels, dtype=np.int64)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (no) or 1 (yes)")
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    return y, s


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC (scikit-learn; tied scores count one half); None when only one class is
    present."""
    from sklearn.metrics import roc_auc_score

    y, s = _labels_and_scores(labels, scores)
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, s))


def pr_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Average precision (scikit-learn's step-wise area under the precision-recall curve);
    None without a positive. A scorer that ranks at random gets the base rate."""
    from sklearn.metrics import average_precision_score

    y, s = _labels_and_scores(labels, scores)
    if not y.any():
        return None
    return float(average_precision_score(y, s))


def classification_metrics(
    labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5
) -> ClassificationMetrics:
    """Precision, recall, F1 of "yes", accuracy and ROC AUC of ``scores`` (P(yes)) against
    ``labels`` (1 = yes). A ratio with nothing to count (no flagged hunk, no positive) is 0."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y, s = _labels_and_scores(labels, scores)
    flagged = (s >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, flagged, labels=[0, 1]).ravel())
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, flagged, labels=[1], average="binary", zero_division=0.0
    )
    return ClassificationMetrics(
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        accuracy=(tp + tn) / len(y),
        roc_auc=roc_auc(labels, scores),
        threshold=threshold,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        true_negatives=tn,
    )


def precision_recall_curve(labels: Sequence[int], scores: Sequence[float]) -> PrecisionRecallCurve:
    """Precision and recall of "yes" when flagging every score at or above each distinct
    score; recall is 0 throughout when there is no positive."""
    y, s = _labels_and_scores(labels, scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    true_positives = np.cumsum(y)
    flagged = np.arange(1, len(y) + 1)
    # The last position of each run of equal scores: a threshold flags the whole run.
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    positives = int(y.sum())
    precision = true_positives[ends] / flagged[ends]
    recall = true_positives[ends] / positives if positives else np.zeros(len(ends))
    return PrecisionRecallCurve(
        thresholds=tuple(float(t) for t in s[ends]),
        precision=tuple(float(p) for p in precision),
        recall=tuple(float(r) for r in recall),
    )


def precision_at(labels: Sequence[int], scores: Sequence[float], k: int) -> float | None:
    """The share of "yes" among the ``k`` highest scores; hunks tied at the cut count in
    proportion (what a random order among them gives on average, so a constant scorer
    gets the base rate). None for an empty split."""
    y, s = _labels_and_scores(labels, scores)
    if not len(y) or k < 1:
        return None
    k = min(k, len(y))
    cut = np.sort(s)[::-1][k - 1]
    above = s > cut
    tied = s == cut
    taken = k - int(above.sum())
    positives = y[above].sum() + taken * y[tied].mean()
    return float(positives / k)


@dataclass(frozen=True)
class ScorerReport:
    """One scorer on the test split: ranking (with bootstrap 95% intervals) and what it
    flags at ``metrics.threshold``."""

    description: str
    metrics: ClassificationMetrics
    roc_auc_ci: tuple[float, float] | None
    pr_auc: float | None
    pr_auc_ci: tuple[float, float] | None
    flagged: int
    flagged_share: float
    precision_top10: float | None
    precision_top5pct: float | None


@dataclass(frozen=True)
class AucDifference:
    """ROC AUC of ``first`` minus that of ``second`` on the same hunks, with a paired
    bootstrap 95% interval: they differ only when the interval excludes 0."""

    first: str
    second: str
    difference: float
    ci: tuple[float, float]

    @property
    def significant(self) -> bool:
        return not self.ci[0] <= 0.0 <= self.ci[1]


def bootstrap_aucs(
    labels: np.ndarray, scores: dict[str, np.ndarray], resamples: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROC AUC and average precision of every scorer on the same resamples (a resample is
    a multinomial count per hunk; those left with one class are dropped)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    out = {}
    for name, s in scores.items():
        roc, ap = weighted_aucs(labels, s, counts)
        keep = np.isfinite(roc)
        out[name] = (roc[keep], ap[keep])
    return out


def interval95(values: np.ndarray) -> tuple[float, float] | None:
    """The central 95% of bootstrap ``values`` (2.5th and 97.5th percentiles, 4 decimals);
    None when there are none."""
    if not len(values):
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def score_report(
    labels: Sequence[int],
    scores: Sequence[float],
    threshold: float,
    description: str,
    samples: tuple[np.ndarray, np.ndarray] | None = None,
) -> ScorerReport:
    """``scores`` judged against ``labels``; ``samples`` are its bootstrap (ROC AUC,
    average precision) values, see :func:`evaluate_rnp`."""
    metrics = classification_metrics(labels, scores, threshold)
    flagged = metrics.true_positives + metrics.false_positives
    return ScorerReport(
        description=description,
        metrics=metrics,
        roc_auc_ci=interval95(samples[0]) if samples is not None else None,
        pr_auc=pr_auc(labels, scores),
        pr_auc_ci=interval95(samples[1]) if samples is not None else None,
        flagged=flagged,
        flagged_share=flagged / len(labels) if len(labels) else 0.0,
        precision_top10=precision_at(labels, scores, TOP_K),
        precision_top5pct=precision_at(labels, scores, max(1, math.ceil(TOP_SHARE * len(labels)))),
    )


def majority_label(train_labels: Sequence[int]) -> int:
    """The more frequent label of the training split (ties: 0, flag nothing)."""
    if not train_labels:
        raise ValueError("no training labels to take a majority of")
    positives = sum(1 for label in train_labels if label == 1)
    return 1 if positives > len(train_labels) - positives else 0


# --------------------------------------------------------------------------------------------
# The review-necessity and generation results
# --------------------------------------------------------------------------------------------

#: The scorers of the rnp report, in the order tables show them.
SERVED, ADAPTER, LAPREDICT, MAJORITY = "served", "adapter", "lapredict", "majority"


@dataclass(frozen=True)
class RnpReport:
    """Review necessity on the whole test split: the served score (the adapter through the
    bundle's calibration), the raw adapter, and two baselines fitted on the train split."""

    scorers: dict[str, ScorerReport]
    differences: list[AucDifference]
    curves: dict[str, PrecisionRecallCurve]
    majority_label: int
    train_records: int
    test_records: int
    test_yes: int
    bootstrap: int
    calibrated: bool

    @property
    def served(self) -> ClassificationMetrics:
        return self.scorers[SERVED].metrics

    @property
    def adapter(self) -> ClassificationMetrics:
        return self.scorers[ADAPTER].metrics

    @property
    def lapredict(self) -> ClassificationMetrics:
        return self.scorers[LAPREDICT].metrics

    @property
    def majority(self) -> ClassificationMetrics:
        return self.scorers[MAJORITY].metrics


@dataclass(frozen=True)
class GenerationReport:
    """Generated text (comments, refinements, edits) against the references of one split.

    BLEU-4 and exact match are 0-100; ``bleu4_stopwords_removed`` is set only when a stop-word
    list was given (the review-comment task).
    """

    records: int
    bleu4: float
    exact_match: float
    bleu4_stopwords_removed: float | None = None


def evaluate_rnp(
    adapter_scores: Sequence[float],
    test_labels: Sequence[int],
    test_hunks: Sequence[str],
    train_labels: Sequence[int],
    train_hunks: Sequence[str],
    *,
    served_scores: Sequence[float] | None = None,
    threshold: float = 0.5,
    valid_labels: Sequence[int] = (),
    valid_hunks: Sequence[str] = (),
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> RnpReport:
    """Judge the served scores (``served_scores``, at ``threshold``; the adapter's own
    when None) beside the adapter's P(yes) at 0.5, LApredict fitted on the train split (its
    threshold chosen on the valid split by the bundle's rule, else 0.5) and the majority
    class, with ``bootstrap`` paired resamples of the test split behind every interval."""
    from training.calibration import choose_threshold

    if len(test_hunks) != len(test_labels):
        raise ValueError(f"{len(test_hunks)} test hunks for {len(test_labels)} labels")
    if len(train_hunks) != len(train_labels):
        raise ValueError(f"{len(train_hunks)} train hunks for {len(train_labels)} labels")
    majority = majority_label(train_labels)
    lapredict = lapredict_fit([hunk_line_counts(h) for h in train_hunks], train_labels)
    lapredict_threshold = 0.5
    if len(valid_labels) and any(valid_labels):
        valid_scores = lapredict.predict_proba([hunk_line_counts(h) for h in valid_hunks])
        lapredict_threshold = choose_threshold(valid_labels, valid_scores)
    calibrated = served_scores is not None
    scores = {
        SERVED: np.asarray(served_scores if calibrated else adapter_scores, dtype=np.float64),
        ADAPTER: np.asarray(adapter_scores, dtype=np.float64),
        LAPREDICT: np.asarray(
            lapredict.predict_proba([hunk_line_counts(h) for h in test_hunks]), dtype=np.float64
        ),
        MAJORITY: np.full(len(test_labels), float(majority)),
    }
    thresholds = {SERVED: threshold, ADAPTER: 0.5, LAPREDICT: lapredict_threshold, MAJORITY: 0.5}
    descriptions = {
        SERVED: "hunkwise (served: adapter + calibration)" if calibrated else "hunkwise (adapter)",
        ADAPTER: "rnp adapter alone (P(yes))",
        LAPREDICT: "LApredict (lines added/deleted)",
        MAJORITY: f'majority class ("{"yes" if majority else "no"}")',
    }
    y = np.asarray(test_labels, dtype=np.int64)
    samples = bootstrap_aucs(y, scores, bootstrap, seed) if bootstrap and len(y) else {}
    reports = {
        name: score_report(y, s, thresholds[name], descriptions[name], samples.get(name))
        for name, s in scores.items()
    }
    differences = []
    if samples:
        for first, second in ((SERVED, LAPREDICT), (ADAPTER, LAPREDICT), (SERVED, ADAPTER)):
            a, b = reports[first].metrics.roc_auc, reports[second].metrics.roc_auc
            paired = samples[first][0] - samples[second][0]
            if a is None or b is None or not len(paired):
                continue
            ci = interval95(paired)
            assert ci is not None
            differences.append(AucDifference(first, second, round(a - b, 4), ci))
    return RnpReport(
        scorers=reports,
        differences=differences,
        curves={
            name: precision_recall_curve(y, scores[name]) for name in (SERVED, ADAPTER, LAPREDICT)
        },
        majority_label=majority,
        train_records=len(train_labels),
        test_records=len(test_labels),
        test_yes=int(y.sum()),
        bootstrap=bootstrap,
        calibrated=calibrated,
    )


def evaluate_generation(
    predictions: Sequence[str], references: Sequence[str], stopwords: set[str] | None = None
) -> GenerationReport:
    """BLEU-4 and exact match; with ``stopwords``, also BLEU-4 after removing them."""
    return GenerationReport(
        records=len(references),
        bleu4=bleu4(predictions, references),
        exact_match=exact_match(predictions, references),
        bleu4_stopwords_removed=(
            None if stopwords is None else bleu4(predictions, references, stopwords)
        ),
    )
