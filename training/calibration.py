"""The served review-necessity score: the rnp adapter's logit stacked with the hunk's size
(LApredict's two features) in a logistic regression fitted on the valid split, and the
default threshold chosen on that split. Stored in the bundle's manifest as plain numbers
(``manifest.calibration``), read by every consumer through :class:`Calibration`.

Why stacked: on real histories the size of a change is a strong signal of a later fix
(LApredict), and a tiny base's adapter is a weak one; the regression weighs each on
held-out data, and maps the adapter's scores (trained on re-weighted classes) back to
probabilities at the real base rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: The stacker's inputs, in order: the adapter's logit, log1p(lines added), log1p(lines deleted).
FEATURES = ("adapter_logit", "log1p_added", "log1p_deleted")
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


def feature_matrix(logits: Sequence[float], hunk_texts: Sequence[str]) -> np.ndarray:
    """One row of :data:`FEATURES` per hunk."""
    if len(logits) != len(hunk_texts):
        raise ValueError(f"{len(logits)} logits for {len(hunk_texts)} hunks")
    sizes = np.log1p(np.asarray([hunk_line_counts(t) for t in hunk_texts], dtype=np.float64))
    return np.column_stack([np.asarray(logits, dtype=np.float64), sizes.reshape(-1, 2)])


def sigmoid(values: np.ndarray | Sequence[float]) -> np.ndarray:
    z = np.asarray(values, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Calibration:
    """P(yes) = sigmoid(w . standardised features + bias); features not in ``features``
    are unused. ``threshold`` is the default cut on that probability."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    method: str = "logistic"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, logits: Sequence[float], hunk_texts: Sequence[str]) -> list[float]:
        if not len(logits):
            return []
        x = feature_matrix(logits, hunk_texts)[:, [FEATURES.index(f) for f in self.features]]
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
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"'calibration' is incomplete or not numeric ({error})") from None
        if not features or any(f not in FEATURES for f in features):
            raise ValueError(f"'calibration' features must be some of {', '.join(FEATURES)}")
        if any(len(v) != len(features) for v in numbers.values()):
            raise ValueError("'calibration' mean, scale and weights must match its features")
        values = [bias, threshold, *(x for v in numbers.values() for x in v)]
        if not all(math.isfinite(v) for v in values) or any(s <= 0 for s in numbers["scale"]):
            raise ValueError("'calibration' holds a non-finite number or a zero scale")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("'calibration' threshold must lie in [0, 1]")
        fitted_on = data.get("fitted_on", {})
        return cls(
            features=features,
            bias=bias,
            threshold=threshold,
            method=str(data.get("method", "logistic")),
            fitted_on=fitted_on if isinstance(fitted_on, dict) else {},
            **numbers,
        )


def choose_threshold(
    labels: Sequence[int], scores: Sequence[float], max_flagged: float = MAX_FLAGGED
) -> float:
    """The F1-optimal cut on ``scores`` among those flagging at most ``max_flagged`` of the
    hunks (ties: the higher cut). Without any positive, the cut that flags ``max_flagged``."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        return DEFAULT_THRESHOLD
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Candidate cuts: each distinct score; flagging is "score >= cut".
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    flagged = ends + 1
    allowed = flagged <= max(1, math.floor(max_flagged * len(s)))
    if not allowed.any():
        return float(np.nextafter(s_sorted[0], np.inf))
    true_positives = np.cumsum(y_sorted)[ends]
    positives = int(y.sum())
    if positives == 0:
        return float(s_sorted[ends[allowed][-1]])
    f1 = 2 * true_positives / (flagged + positives)
    f1[~allowed] = -1.0
    best = int(np.flatnonzero(f1 == f1.max())[0])
    return float(s_sorted[ends[best]])


def fit_calibration(
    logits: Sequence[float],
    hunk_texts: Sequence[str],
    labels: Sequence[int],
    *,
    max_flagged: float = MAX_FLAGGED,
    split: str = "valid",
) -> Calibration:
    """Fit the stacker and the default threshold on one labelled split (the valid split:
    never what the adapter trained on, never the test split the report judges)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(logits) or not len(y):
        raise ValueError("calibration needs one label per logit, and at least one")
    positives = int(y.sum())
    features = FEATURES if positives >= MIN_POSITIVES else FEATURES[:1]
    x = feature_matrix(logits, hunk_texts)[:, [FEATURES.index(f) for f in features]]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    standardised = (x - mean) / scale
    if 0 < positives < len(y):
        model = LogisticRegression(C=1.0, max_iter=1000).fit(standardised, y)
        weights, bias = model.coef_[0], float(model.intercept_[0])
    else:
        # One class only: the base rate (smoothed), the adapter's order kept by a tiny weight.
        rate = (positives + 0.5) / (len(y) + 1.0)
        weights = np.zeros(len(features))
        weights[0] = 1e-3
        bias = math.log(rate / (1 - rate))
    calibration = Calibration(
        features=features,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in weights),
        bias=bias,
        threshold=DEFAULT_THRESHOLD,
        fitted_on={"split": split, "records": len(y), "yes": positives, "max_flagged": max_flagged},
    )
    served = calibration.probabilities(logits, hunk_texts)
    threshold = choose_threshold(y, served, max_flagged)
    return Calibration(**{**asdict(calibration), "threshold": min(1.0, threshold)})
