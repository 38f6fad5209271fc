"""The served rnp score: the stacker fitted on a split, its default threshold, its place in
the manifest, and the engine serving it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.untrained_bundle import HUNKS, build_stand_in_bundle
from training.bundle import BundleError, read_manifest
from training.calibration import (
    FEATURES,
    Calibration,
    choose_threshold,
    fit_calibration,
    hunk_line_counts,
    lapredict_fit,
)
from training.engine import Engine


def _hunk(added: int, deleted: int) -> str:
    return "\n".join(["@@ -1 +1 @@", *["-x"] * deleted, *["+y"] * added])


def _split(seed: int = 0, n: int = 600):
    """A split where big changes and high adapter logits both mean "yes"."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 40, n)
    labels = (rng.random(n) < 0.02 + 0.2 * (sizes > 30)).astype(int)
    logits = (2.0 * labels + rng.normal(0, 1.5, n) - 3.0).tolist()
    hunks = [_hunk(int(a), int(a) // 3) for a in sizes]
    return logits, hunks, labels.tolist()


def test_threshold_is_f1_optimal_within_the_flagged_cap():
    labels = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    # Flag 4 (F1 6/7) is the best; a 20% cap allows 2 at most (F1 0.8). The cut lies
    # halfway to the next score down.
    assert choose_threshold(labels, scores, max_flagged=1.0) == pytest.approx(0.55)
    assert choose_threshold(labels, scores, max_flagged=0.2) == pytest.approx(0.75)
    # The cap is rounded to the nearest hunk: 15% of 11 hunks is 2 of them.
    assert choose_threshold([1, 1] + [0] * 9, [0.9, 0.8] + [0.1] * 9) == pytest.approx(0.45)
    # Tied scores flag together: a cap below the tie's size flags nothing.
    assert choose_threshold([1, 0, 0], [0.5, 0.5, 0.5], max_flagged=0.5) > 0.5
    # No positive: the cut that flags the cap.
    assert choose_threshold([0] * 10, [i / 10 for i in range(10)], max_flagged=0.2) == (
        pytest.approx(0.75)
    )


def _size_model(seed: int = 1):
    _, hunks, labels = _split(seed, n=3000)
    return lapredict_fit([hunk_line_counts(h) for h in hunks], labels)


def test_the_stacker_uses_size_and_flags_at_most_fifteen_percent():
    logits, hunks, labels = _split()
    calibration = fit_calibration(logits, hunks, labels, size_model=_size_model())
    assert calibration.features == FEATURES
    assert all(w > 0 for w in calibration.weights)  # both signals point to "yes"
    # Without the size model the adapter's logit is used alone.
    assert fit_calibration(logits, hunks, labels).features == ("adapter_logit",)
    served = np.asarray(calibration.probabilities(logits, hunks))
    assert (served >= calibration.threshold).mean() <= 0.15
    fitted_on = dict(calibration.fitted_on)
    low, high = fitted_on.pop("adapter_auc_ci")
    assert 0.5 < low < fitted_on.pop("adapter_auc") < high
    assert fitted_on == {"split": "valid", "records": 600, "yes": sum(labels), "max_flagged": 0.15}
    # Calibrated: the mean served probability is near the base rate, unlike the
    # adapter's sigmoid.
    assert abs(served.mean() - np.mean(labels)) < 0.02


def test_an_adapter_without_held_out_signal_is_left_out_of_the_served_score():
    _, hunks, labels = _split()
    noise = np.random.default_rng(5).normal(0, 1, len(labels)).tolist()
    calibration = fit_calibration(noise, hunks, labels, size_model=_size_model())
    assert calibration.features == ("size_logit",)
    low, high = calibration.fitted_on["adapter_auc_ci"]
    assert low <= 0.5 <= high
    # The served score is then the size model's order.
    served = calibration.probabilities(noise, hunks)
    sizes = _size_model().logits(hunks)
    order = np.argsort(sizes, kind="stable")
    assert (np.diff(np.asarray(served)[order]) >= -1e-12).all()


def test_few_positives_keep_the_adapter_alone_and_one_class_keeps_its_order():
    logits, hunks, _ = _split(n=100)
    few = [1 if i in (3, 50) else 0 for i in range(100)]
    calibration = fit_calibration(logits, hunks, few, size_model=_size_model())
    assert calibration.features == ("adapter_logit",)
    none = fit_calibration(logits, hunks, [0] * 100)
    served = none.probabilities(logits, hunks)
    assert np.argsort(served, kind="stable").tolist() == np.argsort(logits, kind="stable").tolist()
    assert max(served) < 0.05


def test_round_trip_and_validation():
    logits, hunks, labels = _split()
    calibration = fit_calibration(logits, hunks, labels, size_model=_size_model())
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.probabilities(logits[:5], hunks[:5]) == calibration.probabilities(
        logits[:5], hunks[:5]
    )
    good = calibration.to_dict()
    for bad, message in (
        ({**good, "weights": [1.0]}, "must match"),
        ({**good, "features": ["size"]}, "features must be"),
        ({**good, "size_model": None}, "no size_model"),
        ({**good, "size_model": {**good["size_model"], "weights": [1.0]}}, "two numbers"),
        ({**good, "bias": math.inf}, "non-finite"),
        ({**good, "scale": [0.0, 1.0]}, "zero scale"),
        ({**good, "threshold": 2}, r"\[0, 1\]"),
        ({key: value for key, value in good.items() if key != "bias"}, "incomplete"),
    ):
        with pytest.raises(ValueError, match=message):
            Calibration.from_dict(bad)


def test_hunk_line_counts_skip_the_header():
    assert hunk_line_counts("@@ -1,2 +1,3 @@ def f():\n-a\n+b\n+c\n d") == (2, 1)


def test_the_engine_serves_the_calibrated_score(tmp_path: Path):
    bundle = build_stand_in_bundle(tmp_path / "bundle", stage1=False)
    plain = Engine.load(bundle, device="cpu")
    assert plain.calibration is None and plain.default_threshold == 0.5
    logits = plain.logits(HUNKS)
    assert plain.score(HUNKS) == pytest.approx([1 / (1 + math.exp(-z)) for z in logits])

    texts = [hunk.text for hunk in HUNKS]
    labels = [1, 0, 0, 1, 0, 0][: len(HUNKS)]
    calibration = fit_calibration(logits, texts, labels)
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["calibration"] = calibration.to_dict()
    path.write_text(json.dumps(manifest), encoding="utf-8")
    served = Engine.load(bundle, device="cpu")
    assert served.default_threshold == calibration.threshold
    assert served.score(HUNKS) == pytest.approx(calibration.probabilities(logits, texts))

    manifest["calibration"] = {**calibration.to_dict(), "weights": [1.0, 2.0]}
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="calibration"):
        read_manifest(bundle)
