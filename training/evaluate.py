"""Evaluation: review-necessity metrics beside two baselines (majority class, LApredict),
CodeReviewer-compatible BLEU-4 and exact match for generated text, and the bundle's report
(``report.json``, ``report.md`` and two hand-written SVG plots).

Everything here takes plain data (labels, scores, predictions, references), never a model:
the engine produces predictions, this module only judges them.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from training.calibration import hunk_line_counts, lapredict_fit, weighted_aucs, yes_labels
from training.evidence import EvidenceReport

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


def _bootstrap_aucs(
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


def _interval(values: np.ndarray) -> tuple[float, float] | None:
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
        roc_auc_ci=_interval(samples[0]) if samples is not None else None,
        pr_auc=pr_auc(labels, scores),
        pr_auc_ci=_interval(samples[1]) if samples is not None else None,
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
# Report
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


@dataclass(frozen=True)
class EvaluationReport:
    """Everything written next to a bundle's adapters. ``records`` counts records per task
    and split; ``loss`` holds (step, training loss) per task."""

    rnp: RnpReport | None = None
    rcg: GenerationReport | None = None
    cr: GenerationReport | None = None
    edit: GenerationReport | None = None
    #: The evidence index on the test split's fixed hunks (None: no index or no such hunks).
    evidence: EvidenceReport | None = None
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    loss: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def metrics(self) -> dict:
        """The report's numbers without curves and loss: what a bundle manifest records."""
        data = self.to_dict()
        data.pop("loss")
        if data["rnp"] is not None:
            data["rnp"].pop("curves")
        return data

    def to_dict(self) -> dict:
        """JSON-ready: non-finite numbers (a diverged loss) become null."""
        return _json_safe(asdict(self))


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


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
    samples = _bootstrap_aucs(y, scores, bootstrap, seed) if bootstrap and len(y) else {}
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
            ci = _interval(paired)
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


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def line_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 640,
    height: int = 400,
) -> str:
    """A line chart as a standalone SVG document: one polyline per named series, axes with
    five ticks each, a legend. Non-finite points are skipped."""
    lines = {
        name: [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
        for name, points in series.items()
    }
    lines = {name: points for name, points in lines.items() if points}
    left, right, top, bottom = 70, 160, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    if not lines:
        out.append(
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">no data</text>'
        )
        return "\n".join([*out, "</svg>"]) + "\n"

    def span(values: list[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
        low, high = fixed if fixed is not None else (min(values), max(values))
        return (low - 0.5, high + 0.5) if high == low else (low, high)

    x0, x1 = span([x for points in lines.values() for x, _ in points], x_range)
    y0, y1 = span([y for points in lines.values() for _, y in points], y_range)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
    )
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        y = y0 + (y1 - y0) * i / 4
        out.append(
            f'<line x1="{px(x):.1f}" y1="{top + plot_h}" x2="{px(x):.1f}" y2="{top + plot_h + 5}" '
            f'stroke="#444"/><text x="{px(x):.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle">{x:.3g}</text>'
        )
        out.append(
            f'<line x1="{left - 5}" y1="{py(y):.1f}" x2="{left}" y2="{py(y):.1f}" stroke="#444"/>'
            f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text x="18" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    for index, (name, points) in enumerate(lines.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        coordinates = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(
            f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="1.5">'
            f"<title>{escape(name)}</title></polyline>"
        )
        legend_y = top + 10 + 18 * index
        out.append(
            f'<line x1="{left + plot_w + 12}" y1="{legend_y}" x2="{left + plot_w + 32}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{left + plot_w + 38}" y="{legend_y + 4}">{escape(name)}</text>'
        )
    return "\n".join([*out, "</svg>"]) + "\n"


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ci(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def report_markdown(report: EvaluationReport) -> str:
    """The report as Markdown tables, linking the two plots."""
    out = ["# hunkwise evaluation", ""]
    if report.records:
        splits = sorted({split for counts in report.records.values() for split in counts})
        order = {"train": 0, "valid": 1, "test": 2}
        splits.sort(key=lambda split: (order.get(split, 3), split))
        out += ["## Records", "", "| task | " + " | ".join(splits) + " |"]
        out.append("|---|" + "---:|" * len(splits))
        for task, counts in report.records.items():
            out.append(f"| {task} | " + " | ".join(str(counts.get(s, 0)) for s in splits) + " |")
        out.append("")
    if report.rnp is not None:
        rnp = report.rnp
        out += [
            "## Review necessity (RNP)",
            "",
            f"Whole test split: {rnp.test_records} hunks ({rnp.test_yes} yes, "
            f"{rnp.test_records - rnp.test_yes} no); baselines fitted on {rnp.train_records} "
            "train hunks. AUCs with bootstrap 95% intervals "
            f"({rnp.bootstrap} paired resamples); a hunk is flagged when its score is at least "
            'the scorer\'s threshold. Precision, recall and F1 are those of "yes"; P@10 and '
            'P@5% the share of "yes" among the 10 and the 5% highest scores.',
            "",
            "| scorer | ROC AUC [95% CI] | PR AUC [95% CI] | threshold | flagged | precision "
            "| recall | F1 | P@10 | P@5% |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for scorer in rnp.scorers.values():
            m = scorer.metrics
            out.append(
                f"| {scorer.description} | {_auc(m.roc_auc)} {_ci(scorer.roc_auc_ci)} "
                f"| {_auc(scorer.pr_auc)} {_ci(scorer.pr_auc_ci)} | {m.threshold:.3g} "
                f"| {_percent(scorer.flagged_share)}% | {_percent(m.precision)} "
                f"| {_percent(m.recall)} | {_percent(m.f1)} | {_share(scorer.precision_top10)} "
                f"| {_share(scorer.precision_top5pct)} |"
            )
        if rnp.differences:
            out += ["", "| ROC AUC difference | value [95% CI] | different? |", "|---|---|---|"]
            for d in rnp.differences:
                out.append(
                    f"| {d.first} - {d.second} | {d.difference:+.4f} {_ci(d.ci)} "
                    f"| {'yes' if d.significant else 'no (the interval holds 0)'} |"
                )
        out += ["", "![precision-recall curve](rnp_pr.svg)", ""]
    if report.evidence is not None:
        e = report.evidence
        out += [
            "## Evidence from history",
            "",
            f"For the {e.fixed_test_hunks} test hunks a later fix changed, the share whose "
            f"top-3 evidence (from {e.index_items} fixed train hunks and imported reviews) "
            "exists, holds a fix of the same file, and of the same function.",
            "",
            "| with evidence | same file | same function |",
            "|---:|---:|---:|",
            f"| {_share(e.with_evidence)} | {_share(e.top3_same_file)} "
            f"| {_share(e.top3_same_function)} |",
            "",
        ]
    if report.rcg is not None:
        out += [
            "## Review comments (RCG)",
            "",
            "Smoothed sentence BLEU-4 averaged over the set, as CodeReviewer computes it.",
            "",
            "| records | BLEU-4 | BLEU-4 (stop words removed) |",
            "|---:|---:|---:|",
            f"| {report.rcg.records} | {report.rcg.bleu4:.2f} "
            f"| {_number(report.rcg.bleu4_stopwords_removed)} |",
            "",
        ]
    generated = [(name, r) for name, r in (("cr", report.cr), ("edit", report.edit)) if r]
    if generated:
        out += [
            "## Code refinement (CR) and instruction edits",
            "",
            "Exact match compares whitespace-normalised text.",
            "",
            "| task | records | BLEU-4 | exact match |",
            "|---|---:|---:|---:|",
        ]
        out += [
            f"| {n} | {r.records} | {r.bleu4:.2f} | {r.exact_match:.2f} |" for n, r in generated
        ]
        out.append("")
    if report.loss:
        out += ["## Training loss", "", "![training loss](loss.svg)", ""]
    return "\n".join(out)


def write_report(bundle_dir: Path, report: EvaluationReport) -> None:
    """Write ``report.json``, ``report.md``, ``loss.svg`` and ``rnp_pr.svg`` into ``bundle_dir``."""
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    (bundle_dir / "report.json").write_text(
        json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (bundle_dir / "report.md").write_text(report_markdown(report), encoding="utf-8")
    (bundle_dir / "loss.svg").write_text(
        line_chart_svg(report.loss, "Training loss", "step", "loss"), encoding="utf-8"
    )
    curves = {}
    if report.rnp is not None:
        for name, curve in report.rnp.curves.items():
            label = report.rnp.scorers[name].description
            curves[label] = list(zip(curve.recall, curve.precision, strict=True))
    (bundle_dir / "rnp_pr.svg").write_text(
        line_chart_svg(
            curves,
            "Review necessity: precision-recall",
            "recall (yes)",
            "precision (yes)",
            x_range=(0.0, 1.0),
            y_range=(0.0, 1.0),
        ),
        encoding="utf-8",
    )


# --------------------------------------------------------------------------------------------
# Evaluating a bundle
# --------------------------------------------------------------------------------------------

#: Test records evaluated per generating task when no limit is given: all on a GPU; on CPU,
#: the newest of each test split (generation with a CPU model takes a while). Review
#: necessity is one forward pass per hunk: its whole test split is always scored.
CPU_EVAL_LIMITS: dict[str, int] = {"rcg": 60, "cr": 60, "edit": 60}


def _newest(records: list, limit: int | None) -> list:
    return records if not limit or len(records) <= limit else records[-limit:]


def write_predictions(path: Path, ids: Sequence[str], served, adapter, labels) -> None:
    """One JSON line per test record: ``id``, ``p`` (the served score), ``p_adapter`` (the
    adapter's own P(yes)) and ``label`` (1 = yes), written atomically."""
    path = Path(path)
    lines = [
        json.dumps({"id": i, "p": round(p, 6), "p_adapter": round(a, 6), "label": y})
        for i, p, a, y in zip(ids, served, adapter, labels, strict=True)
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def rnp_logits(engine, records, console, description: str) -> list[float]:
    """The rnp adapter's logit for each record's hunk, in batches, with a progress bar."""
    from training.progress import progress_bar

    logits: list[float] = []
    with progress_bar(console, description, len(records)) as advance:
        for start in range(0, len(records), 64):
            batch = records[start : start + 64]
            logits += engine.logits([r.input for r in batch])
            advance(len(batch))
    return logits


def evaluate_bundle(
    bundle: Path,
    data_dir: Path,
    *,
    device: str = "auto",
    limit: int | None = None,
    stopwords: set[str] | None = None,
    threshold: float | None = None,
    predictions: Path | None = None,
    console=None,
) -> EvaluationReport:
    """Run a bundle's adapters on the test split of ``data_dir`` and build the report:
    RNP on the whole test split (the served score at ``threshold``, default the bundle's,
    beside the raw adapter and both baselines), RCG BLEU-4 (with and without
    ``stopwords``), CR and edit BLEU-4 and exact match. ``limit`` caps the test records
    per task, the newest kept (None: all rnp, and for generation all on a GPU or
    :data:`CPU_EVAL_LIMITS` on CPU; 0: all). ``predictions`` gets one JSON line per rnp
    test record (see :func:`write_predictions`)."""
    from training.bundle import read_manifest
    from training.calibration import sigmoid
    from training.engine import Engine, GenerationRequest
    from training.evidence import evidence_usefulness
    from training.mining.dataset import read_split
    from training.progress import expect_bars, progress_bar

    engine = Engine.load(Path(bundle), device=device)
    manifest = read_manifest(Path(bundle))
    on_cpu = engine.info.device == "cpu"
    expect_bars(sum(engine.has_task(task) for task in ("rnp", "rcg", "cr", "edit")))

    def cap(task: str) -> int | None:
        if limit is not None:
            return limit or None
        return CPU_EVAL_LIMITS.get(task) if on_cpu else None

    records: dict[str, dict[str, int]] = {}
    for task in ("rnp", "rcg", "cr", "edit"):
        records[task] = {
            split: len(read_split(data_dir, task, split)) for split in ("train", "valid", "test")
        }
    results: dict[str, object] = {}
    if engine.has_task("rnp"):
        test = _newest(read_split(data_dir, "rnp", "test"), cap("rnp"))
        train = read_split(data_dir, "rnp", "train")
        valid = read_split(data_dir, "rnp", "valid")
        if test and train:
            logits = rnp_logits(engine, test, console, "Evaluating rnp")
            adapter = [float(p) for p in sigmoid(logits)]
            calibration = engine.calibration
            served = (
                calibration.probabilities(logits, [r.input for r in test]) if calibration else None
            )
            labels = yes_labels(test)
            results["rnp"] = evaluate_rnp(
                adapter,
                labels,
                [r.input for r in test],
                yes_labels(train),
                [r.input for r in train],
                served_scores=served,
                threshold=engine.default_threshold if threshold is None else threshold,
                valid_labels=yes_labels(valid),
                valid_hunks=[r.input for r in valid],
            )
            if predictions is not None:
                write_predictions(
                    predictions, [r.id for r in test], served or adapter, adapter, labels
                )
    index, _ = engine.evidence_index()
    rnp_test = read_split(data_dir, "rnp", "test")
    if index is not None and any(r.output == "yes" for r in rnp_test):
        results["evidence"] = evidence_usefulness(index, rnp_test)
    for task in ("rcg", "cr", "edit"):
        test = _newest(read_split(data_dir, task, "test"), cap(task))
        if not test or not engine.has_task(task):
            continue
        predictions: list[str] = []
        with progress_bar(console, f"Evaluating {task}", len(test)) as advance:
            for start in range(0, len(test), 16):
                batch = test[start : start + 16]
                predictions += engine.generate(
                    [GenerationRequest(task, r.instruction, r.input) for r in batch]
                )
                advance(len(batch))
        results[task] = evaluate_generation(
            predictions, [r.output for r in test], stopwords if task == "rcg" else None
        )
    loss = {
        task: [(int(step), float(value)) for step, value in history]
        for task, history in (manifest.training.get("loss_history") or {}).items()
    }
    return EvaluationReport(**results, records=records, loss=loss)


def write_bundle_report(bundle: Path, report: EvaluationReport) -> None:
    """Write the report files into the bundle and its numbers into ``manifest.metrics``."""
    from training.bundle import read_manifest, write_manifest

    write_report(bundle, report)
    manifest = read_manifest(bundle)
    manifest.metrics = report.metrics()
    write_manifest(bundle, manifest)
