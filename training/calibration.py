"""The served review-necessity score: the rnp adapter's logit stacked with the hunk's size
in a logistic regression fitted on the valid split, and the default threshold chosen on
that split. The size enters as LApredict's logit (a logistic regression on lines added and
deleted, fitted on the train split, whose thousands of hunks pin its two weights down
better than the valid split's few dozen "yes" could). Stored in the bundle's manifest as
plain numbers (``manifest.calibration``), read by every consumer through
:class:`Calibration`.

Why stacked: on real histories the size of a change is a strong signal of a later fix
(LApredict), and a tiny base's adapter is a weak one; the regression weighs each on
held-out data, and maps the adapter's scores (trained on re-weighted classes) back to
probabilities at the real base rate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.tasks import LABEL_YES

#: The stacker's inputs, in order: the adapter's logit and LApredict's logit.
FEATURES = ("adapter_logit", "size_logit")
#: At most this share of hunks is flagged at the default threshold.
MAX_FLAGGED = 0.15
#: Fewer valid positives than this: the stacker would only memorise them; the adapter's
#: logit alone is kept (one weight and a bias) and the threshold is capped as usual.
MIN_POSITIVES = 5
DEFAULT_THRESHOLD = 0.5


def hunk_line_counts(hunk_text: str) -> tuple[int, int]:
    """Lines added and deleted in a hunk: the ``+``/``-`` lines after its first ``@@``
    header (the whole text when there is none)."""
    lines = hunk_text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("@@"):
            lines = lines[index + 1 :]
            break
    added = sum(1 for line in lines if line.startswith("+"))
    deleted = sum(1 for line in lines if line.startswith("-"))
    return added, deleted


@dataclass(frozen=True)
class LApredictModel:
    """LApredict (Zeng et al., ISSTA 2021): logistic regression on the lines added and
    deleted by a change, as log1p features standardised on the training split."""

    mean: tuple[float, float]
    scale: tuple[float, float]
    weights: tuple[float, float]
    bias: float

    def predict_proba(self, features: Sequence[tuple[int, int]]) -> list[float]:
        """P(yes) for each (lines added, lines deleted)."""
        if not features:
            return []
        z = _standardise(features, self.mean, self.scale) @ np.asarray(self.weights) + self.bias
        return [float(p) for p in np.exp(-np.logaddexp(0.0, -z))]

    def logits(self, hunk_texts: Sequence[str]) -> np.ndarray:
        """The regression's linear score for each hunk (its probability's logit)."""
        if not len(hunk_texts):
            return np.zeros(0)
        features = [hunk_line_counts(text) for text in hunk_texts]
        return _standardise(features, self.mean, self.scale) @ np.asarray(self.weights) + self.bias

    @classmethod
    def from_dict(cls, data: Any) -> LApredictModel:
        values = {key: tuple(float(v) for v in data[key]) for key in ("mean", "scale", "weights")}
        if any(len(v) != 2 for v in values.values()):
            raise ValueError("'size_model' mean, scale and weights must have two numbers each")
        return cls(bias=float(data["bias"]), **values)  # type: ignore[arg-type]


def _log_features(features: Sequence[tuple[int, int]]) -> np.ndarray:
    return np.log1p(np.asarray(features, dtype=np.float64).reshape(-1, 2))


def _standardise(
    features: Sequence[tuple[int, int]], mean: Sequence[float], scale: Sequence[float]
) -> np.ndarray:
    return (_log_features(features) - np.asarray(mean)) / np.asarray(scale)


def lapredict_fit(
    train_features: Sequence[tuple[int, int]], train_labels: Sequence[int]
) -> LApredictModel:
    """Fit LApredict with scikit-learn's L2-regularised logistic regression.

    ``train_features`` are (lines added, lines deleted) per hunk, see :func:`hunk_line_counts`.
    A one-class training split gives its (smoothed) base rate to every hunk.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(train_labels, dtype=np.int64)
    if len(train_features) != len(y) or len(y) == 0:
        raise ValueError("LApredict needs as many labels as feature pairs, and at least one")
    raw = _log_features(train_features)
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[scale == 0] = 1.0
    if y.min() == y.max():
        rate = (y.sum() + 0.5) / (len(y) + 1.0)
        weights, bias = np.zeros(2), float(np.log(rate / (1 - rate)))
    else:
        model = LogisticRegression(C=1000.0, max_iter=1000).fit((raw - mean) / scale, y)
        weights, bias = model.coef_[0], float(model.intercept_[0])
    return LApredictModel(
        mean=(float(mean[0]), float(mean[1])),
        scale=(float(scale[0]), float(scale[1])),
        weights=(float(weights[0]), float(weights[1])),
        bias=bias,
    )


def yes_labels(records) -> list[int]:
    """1 for each review-necessity record labelled "yes", else 0."""
    return [int(record.output == LABEL_YES) for record in records]


def size_model_for(records) -> LApredictModel:
    """LApredict fitted on these review-necessity records (the train split): the size
    model behind ``size_logit``."""
    return lapredict_fit([hunk_line_counts(r.input) for r in records], yes_labels(records))


def sigmoid(values: np.ndarray | Sequence[float]) -> np.ndarray:
    z = np.asarray(values, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Calibration:
    """P(yes) = sigmoid(w . standardised features + bias) over ``features`` (some of
    :data:`FEATURES`); ``size_model`` is the LApredict regression behind ``size_logit``.
    ``threshold`` is the default cut on that probability."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    size_model: LApredictModel | None = None
    method: str = "logistic"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def matrix(self, logits: Sequence[float], hunk_texts: Sequence[str]) -> np.ndarray:
        """The stacker's inputs, one row per hunk, one column per feature."""
        if len(logits) != len(hunk_texts):
            raise ValueError(f"{len(logits)} logits for {len(hunk_texts)} hunks")
        columns = []
        for name in self.features:
            if name == "adapter_logit":
                columns.append(np.asarray(logits, dtype=np.float64))
            else:
                assert self.size_model is not None
                columns.append(self.size_model.logits(hunk_texts))
        return np.column_stack(columns) if columns else np.zeros((len(logits), 0))

    def probabilities(self, logits: Sequence[float], hunk_texts: Sequence[str]) -> list[float]:
        if not len(logits):
            return []
        x = self.matrix(logits, hunk_texts)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale) @ np.asarray(self.weights)
        return [float(p) for p in sigmoid(z + self.bias)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Validate a manifest's ``calibration`` object; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("'calibration' must be an object")
        try:
            features = tuple(data["features"])
            numbers = {
                key: tuple(float(v) for v in data[key]) for key in ("mean", "scale", "weights")
            }
            bias, threshold = float(data["bias"]), float(data["threshold"])
            size = data.get("size_model")
            size_model = LApredictModel.from_dict(size) if size is not None else None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"'calibration' is incomplete or not numeric ({error})") from None
        if not features or any(f not in FEATURES for f in features):
            raise ValueError(f"'calibration' features must be some of {', '.join(FEATURES)}")
        if "size_logit" in features and size_model is None:
            raise ValueError("'calibration' uses size_logit but has no size_model")
        if any(len(v) != len(features) for v in numbers.values()):
            raise ValueError("'calibration' mean, scale and weights must match its features")
        values = [bias, threshold, *(x for v in numbers.values() for x in v)]
        if size_model is not None:
            values += [size_model.bias, *size_model.mean, *size_model.scale, *size_model.weights]
        scales = [*numbers["scale"], *(size_model.scale if size_model else ())]
        if not all(math.isfinite(v) for v in values) or any(s <= 0 for s in scales):
            raise ValueError("'calibration' holds a non-finite number or a zero scale")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("'calibration' threshold must lie in [0, 1]")
        fitted_on = data.get("fitted_on", {})
        return cls(
            features=features,
            bias=bias,
            threshold=threshold,
            size_model=size_model,
            method=str(data.get("method", "logistic")),
            fitted_on=fitted_on if isinstance(fitted_on, dict) else {},
            **numbers,
        )


def weighted_aucs(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of ``scores`` for each row of ``weights`` (how many
    times each hunk counts), vectorised over the rows; tied scores are one threshold, as in
    scikit-learn. A row without both classes gives NaN."""
    labels = np.asarray(labels, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    positives = np.add.reduceat(w * labels[order], starts, axis=1)  # per group, best first
    negatives = np.add.reduceat(w * (1.0 - labels[order]), starts, axis=1)
    total_p, total_n = positives.sum(axis=1), negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A positive beats the negatives of every lower group, and ties half of its own.
        lower_negatives = total_n[:, None] - np.cumsum(negatives, axis=1)
        roc = (positives * (lower_negatives + 0.5 * negatives)).sum(axis=1) / (total_p * total_n)
        cum_p, cum_n = np.cumsum(positives, axis=1), np.cumsum(negatives, axis=1)
        precision = np.where(cum_p + cum_n > 0, cum_p / (cum_p + cum_n), 0.0)
        ap = (positives * precision).sum(axis=1) / total_p
    invalid = (total_p == 0) | (total_n == 0)
    roc[invalid] = np.nan
    ap[invalid] = np.nan
    return roc, ap


def adapter_signal(
    logits: Sequence[float], labels: Sequence[int], resamples: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The adapter's ROC AUC on a split and its bootstrap 95% interval."""
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(logits, dtype=np.float64)
    auc = float(weighted_aucs(y, z, np.ones((1, len(y))))[0][0])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=resamples)
    samples = weighted_aucs(y, z, counts)[0]
    samples = samples[np.isfinite(samples)]
    low, high = np.percentile(samples, [2.5, 97.5]) if len(samples) else (auc, auc)
    return auc, (round(float(low), 4), round(float(high), 4))


def choose_threshold(
    labels: Sequence[int], scores: Sequence[float], max_flagged: float = MAX_FLAGGED
) -> float:
    """The F1-optimal cut on ``scores`` among those flagging at most ``max_flagged`` of the
    hunks (rounded to the nearest whole hunk, at least one; ties: the higher cut). Without
    any positive, the cut that flags ``max_flagged``. The cut lies halfway between the
    lowest flagged score and the next one down: the split's decisions are the same, and a
    new hunk is flagged when it scores nearer the flagged side (a cut at a flagged score
    itself would leave out a new hunk that scores a hair below it)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        return DEFAULT_THRESHOLD
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Candidate cuts: each distinct score; flagging is "score >= cut".
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    flagged = ends + 1
    allowed = flagged <= max(1, round(max_flagged * len(s)))
    if not allowed.any():
        return float(np.nextafter(s_sorted[0], np.inf))
    true_positives = np.cumsum(y_sorted)[ends]
    positives = int(y.sum())
    if positives == 0:
        best = int(np.flatnonzero(allowed)[-1])
    else:
        f1 = 2 * true_positives / (flagged + positives)
        f1[~allowed] = -1.0
        best = int(np.flatnonzero(f1 == f1.max())[0])
    end = ends[best]
    if end + 1 < len(s_sorted):
        return float((s_sorted[end] + s_sorted[end + 1]) / 2)
    return float(s_sorted[end])


def fit_calibration(
    logits: Sequence[float],
    hunk_texts: Sequence[str],
    labels: Sequence[int],
    *,
    size_model: LApredictModel | None = None,
    max_flagged: float = MAX_FLAGGED,
    split: str = "valid",
    features: Sequence[str] | None = None,
) -> Calibration:
    """Fit the stacker and the default threshold on one labelled split (the valid split:
    never what the adapter trained on, never the test split the report judges).
    ``size_model`` is LApredict fitted on the train split (:func:`lapredict_fit`); without
    it, or with fewer than :data:`MIN_POSITIVES` "yes", the adapter's logit is used alone.
    With both, the adapter's logit is stacked with the size only when its ROC AUC on this
    split is above 0.5 with 95% confidence (:func:`adapter_signal`); otherwise the served
    score is the size alone, and ``fitted_on`` says why (``adapter_auc``, ``_ci``).
    ``features`` (some of :data:`FEATURES`) overrides the choice, for ablations."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(logits) or not len(y):
        raise ValueError("calibration needs one label per logit, and at least one")
    positives = int(y.sum())
    fitted_on: dict[str, Any] = {
        "split": split,
        "records": len(y),
        "yes": positives,
        "max_flagged": max_flagged,
    }
    if features is None:
        features = FEATURES[:1]
        if size_model is not None and positives >= MIN_POSITIVES:
            # The adapter enters the served score only when it ranks this held-out split
            # better than chance with 95% confidence; else size alone is served.
            auc, interval = adapter_signal(logits, y)
            fitted_on.update(adapter_auc=round(auc, 4), adapter_auc_ci=list(interval))
            features = FEATURES if interval[0] > 0.5 else FEATURES[1:]
    features = tuple(features)
    unfitted = Calibration(
        features=features,
        mean=(0.0,) * len(features),
        scale=(1.0,) * len(features),
        weights=(0.0,) * len(features),
        bias=0.0,
        threshold=DEFAULT_THRESHOLD,
        size_model=size_model,
    )
    x = unfitted.matrix(logits, hunk_texts)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    standardised = (x - mean) / scale
    if 0 < positives < len(y):
        model = LogisticRegression(C=1.0, max_iter=1000).fit(standardised, y)
        weights, bias = model.coef_[0], float(model.intercept_[0])
    else:
        # One class only: the base rate (smoothed), the first feature's order kept by a
        # tiny weight.
        rate = (positives + 0.5) / (len(y) + 1.0)
        weights = np.zeros(len(features))
        weights[0] = 1e-3
        bias = math.log(rate / (1 - rate))
    calibration = dataclasses.replace(
        unfitted,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in weights),
        bias=bias,
        fitted_on=fitted_on,
    )
    served = calibration.probabilities(logits, hunk_texts)
    threshold = choose_threshold(y, served, max_flagged)
    return dataclasses.replace(calibration, threshold=min(1.0, threshold))
