"""Metrics, baselines and the evaluation report (training/metrics.py, training/report.py).

The BLEU golden numbers were computed with CodeReviewer's own ``bleu_fromstr``
(CodeBERT ``CodeReviewer/code/evaluator/smooth_bleu.py``, NLTK 3.7) and are written
here literally; the ``small stop words`` column ran it with a stopwords.txt of
``the a is this``.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.calibration import hunk_line_counts, lapredict_fit, weighted_aucs
from training.metrics import (
    bleu4,
    bleu_tokens,
    classification_metrics,
    evaluate_generation,
    evaluate_rnp,
    exact_match,
    load_stopwords,
    majority_label,
    pr_auc,
    precision_at,
    precision_recall_curve,
    roc_auc,
)
from training.report import EvaluationReport, line_chart_svg, write_report

SMALL_STOPWORDS = {"the", "a", "is", "this"}

# predictions, references, bleu_fromstr(rmstop=False), bleu_fromstr(rmstop=True, small list)
BLEU_GOLDEN = [
    (["Fix the typo."], ["Fix the typo."], 100.0, 100.0),
    ([""], ["add a test"], 4.98, 13.53),  # empty prediction: exp(-reference length)
    (["add a test"], [""], 0.0, 0.0),  # empty reference
    ([""], [""], 100.0, 100.0),
    (["Fix The Typo"], ["fix the typo"], 100.0, 57.74),  # stop words are case-sensitive
    (["x != y"], ["x!=y"], 100.0, 100.0),
    (["Please rename this variable"], ["Can you rename this variable?"], 44.11, 41.64),
    (["why not use a set here?"], ["Why not use a dict here instead?"], 49.37, 39.17),
    (
        ["This is the bug", "Use a constant"],
        ["The bug is here", "use constants"],
        49.27,
        60.69,
    ),
    (
        ["nit: 3.14, 2,000 foo_bar.baz() - 5-6"],
        ["nit: 3.14 , 2,000 foo_bar . baz ( ) - 5 - 6"],
        100.0,
        100.0,
    ),
    (["The cache is stale"], ["the cache is stale"], 100.0, 68.66),
    (["don't do this"], ["do not do this"], 33.98, 31.95),
]


@pytest.mark.parametrize(("predictions", "references", "plain", "without_stopwords"), BLEU_GOLDEN)
def test_bleu4_matches_codereviewer(predictions, references, plain, without_stopwords):
    assert bleu4(predictions, references) == plain
    assert bleu4(predictions, references, SMALL_STOPWORDS) == without_stopwords


def test_bleu_tokens_follow_codereviewer_tokenization():
    text = "Don't use foo_bar.baz()! x!=y 3.14, 2,000 5-6"
    assert bleu_tokens(text) == [
        *("don", "'", "t", "use", "foo", "_", "bar", ".", "baz", "(", ")", "!"),
        *("x", "!", "=", "y", "3", ".", "14", ",", "2", ",", "000", "5", "-", "6"),
    ]
    # Python's re \w, as NLTK 3.7 used: "½" is a word character.
    assert bleu_tokens("x½y") == ["x½y"]
    assert bleu_tokens("The cat", {"the"}) == ["the", "cat"]
    assert bleu_tokens("the cat", {"the"}) == ["cat"]


def test_bleu4_rejects_unpaired_or_empty_sets():
    with pytest.raises(ValueError, match="pair up"):
        bleu4(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="nothing to score"):
        bleu4([], [])


def test_load_stopwords(tmp_path):
    path = tmp_path / "stopwords.txt"
    path.write_text("the\n a \n\nain't\n", encoding="utf-8")
    assert load_stopwords(path) == {"the", "a", "ain't"}


def test_exact_match_normalises_whitespace():
    predictions = ["def f(x):\n    return  x\n", "a", "b"]
    references = ["def f(x): return x", "a ", "c"]
    assert exact_match(predictions, references) == 66.67
    assert exact_match([""], ["  \n"]) == 100.0


def test_classification_metrics_by_hand():
    labels = [1, 1, 0, 0, 1]
    scores = [0.9, 0.4, 0.6, 0.1, 0.5]
    m = classification_metrics(labels, scores)
    assert (m.true_positives, m.false_positives, m.false_negatives, m.true_negatives) == (
        2,
        1,
        1,
        1,
    )
    assert (m.support_yes, m.support_no) == (3, 2)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.accuracy == pytest.approx(3 / 5)
    assert m.roc_auc == pytest.approx(4 / 6)
    # The threshold is inclusive.
    assert classification_metrics([1], [0.5], threshold=0.5).true_positives == 1


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.8, 0.2]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0, 1, 0, 0], [0.3] * 5) == 0.5


def test_metrics_without_positives():
    m = classification_metrics([0, 0, 0], [0.9, 0.2, 0.1])
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.roc_auc is None
    assert precision_recall_curve([0, 0], [0.9, 0.1]).recall == (0.0, 0.0)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="0 \\(no\\) or 1"):
        classification_metrics([2], [0.5])
    with pytest.raises(ValueError, match="finite"):
        classification_metrics([1], [math.nan])
    with pytest.raises(ValueError, match="pair up"):
        classification_metrics([1, 0], [0.5])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])),
        min_size=2,
        max_size=30,
    )
)
def test_roc_auc_equals_pairwise_definition(pairs):
    labels = [label for label, _ in pairs]
    scores = [score for _, score in pairs]
    positives = [s for label, s in pairs if label == 1]
    negatives = [s for label, s in pairs if label == 0]
    if not positives or not negatives:
        assert roc_auc(labels, scores) is None
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(positives, negatives))
    assert roc_auc(labels, scores) == pytest.approx(wins / (len(positives) * len(negatives)))


def test_precision_recall_curve_by_hand():
    curve = precision_recall_curve([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.5])
    assert curve.thresholds == (0.9, 0.6, 0.5, 0.4, 0.1)
    assert curve.precision == pytest.approx((1.0, 1 / 2, 2 / 3, 3 / 4, 3 / 5))
    assert curve.recall == pytest.approx((1 / 3, 1 / 3, 2 / 3, 1.0, 1.0))
    # Tied scores are one point.
    tied = precision_recall_curve([1, 0, 1], [0.7, 0.7, 0.2])
    assert tied.thresholds == (0.7, 0.2)
    assert tied.precision == pytest.approx((1 / 2, 2 / 3))
    assert tied.recall == pytest.approx((1 / 2, 1.0))


def test_hunk_line_counts():
    hunk = "\n".join(
        [
            "--- a/f.py",
            "+++ b/f.py",
            "@@ -1,4 +1,4 @@ def f():",
            " context",
            "-old",
            "--- a line that was '-- x'",
            "+new",
            "+++ a line that was '++ y'",
            "+",
            "\\ No newline at end of file",
        ]
    )
    assert hunk_line_counts(hunk) == (3, 2)
    assert hunk_line_counts("+a\n-b\n c") == (1, 1)
    assert hunk_line_counts("@@ -1 +1 @@") == (0, 0)


def test_majority_label():
    assert majority_label([1, 1, 0]) == 1
    assert majority_label([1, 0, 0]) == 0
    assert majority_label([1, 0]) == 0


def test_lapredict_learns_a_separable_problem():
    # Big changes need review, small ones do not.
    features = [(a, d) for a in range(0, 5) for d in range(0, 3)] + [
        (a, d) for a in range(40, 60, 4) for d in range(10, 25, 5)
    ]
    labels = [0] * 15 + [1] * 15
    model = lapredict_fit(features, labels)
    probabilities = model.predict_proba(features)
    assert all(0.0 < p < 1.0 for p in probabilities)
    m = classification_metrics(labels, probabilities)
    assert m.accuracy == 1.0
    assert m.roc_auc == 1.0
    small, big = model.predict_proba([(1, 0), (200, 80)])
    assert small < 0.1 < 0.9 < big
    assert model.predict_proba([]) == []


def test_lapredict_survives_one_class_and_constant_features():
    model = lapredict_fit([(3, 1)] * 4, [1, 1, 1, 1])
    (p,) = model.predict_proba([(3, 1)])
    assert 0.5 < p < 1.0


def _hunk(added: int, deleted: int) -> str:
    return "\n".join(["@@ -1 +1 @@", *["-x"] * deleted, *["+y"] * added])


def test_evaluate_rnp_puts_the_model_beside_both_baselines():
    train_hunks = [_hunk(1, 0)] * 6 + [_hunk(30, 10)] * 4
    train_labels = [0] * 6 + [1] * 4
    test_hunks = [_hunk(2, 0), _hunk(25, 12), _hunk(1, 1), _hunk(40, 3)]
    test_labels = [0, 1, 0, 1]
    report = evaluate_rnp(
        [0.2, 0.4, 0.6, 0.9], test_labels, test_hunks, train_labels, train_hunks, bootstrap=200
    )
    assert report.majority_label == 0
    assert report.majority.roc_auc == 0.5
    assert report.majority.f1 == 0.0
    assert report.lapredict.roc_auc == 1.0
    assert report.adapter.roc_auc == pytest.approx(0.75)
    # Without a calibration the served score is the adapter's.
    assert not report.calibrated and report.served == report.adapter
    assert (report.train_records, report.test_records, report.test_yes) == (10, 4, 2)
    served = report.scorers["served"]
    assert served.flagged == 2 and served.flagged_share == 0.5
    assert served.precision_top10 == 0.5  # all four hunks, two of them yes
    assert served.precision_top5pct == 1.0  # the single highest score is a yes
    low, high = served.roc_auc_ci
    assert 0.0 <= low <= 0.75 <= high <= 1.0


def test_evaluate_rnp_judges_the_served_score_at_its_threshold():
    hunks = [_hunk(i % 7, i % 3) for i in range(40)]
    labels = [int(i % 5 == 0) for i in range(40)]
    served = [0.9 if label else 0.1 for label in labels]
    report = evaluate_rnp(
        [0.5] * 40, labels, hunks, labels, hunks, served_scores=served, threshold=0.8
    )
    assert report.calibrated
    assert report.served.threshold == 0.8 and report.adapter.threshold == 0.5
    assert report.served.roc_auc == 1.0 and report.adapter.roc_auc == 0.5
    assert report.served.precision == 1.0 and report.served.recall == 1.0
    first = report.differences[0]
    assert (first.first, first.second) == ("served", "lapredict")
    served_vs_adapter = report.differences[-1]
    assert served_vs_adapter.difference == 0.5 and served_vs_adapter.significant


def test_bootstrap_intervals_are_paired_and_reproducible():
    rng = np.random.default_rng(3)
    labels = (rng.random(300) < 0.1).astype(int).tolist()
    scores = (np.asarray(labels) * 0.3 + rng.random(300)).tolist()
    hunks = [_hunk(1, 1)] * 300
    first = evaluate_rnp(scores, labels, hunks, labels, hunks, bootstrap=300, seed=7)
    again = evaluate_rnp(scores, labels, hunks, labels, hunks, bootstrap=300, seed=7)
    assert first.scorers["adapter"].roc_auc_ci == again.scorers["adapter"].roc_auc_ci
    # The same scores as served and as adapter: their paired difference is exactly 0.
    same = evaluate_rnp(scores, labels, hunks, labels, hunks, served_scores=scores, bootstrap=300)
    difference = same.differences[-1]
    assert difference.ci == (0.0, 0.0) and not difference.significant


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.integers(0, 3)
        ),
        min_size=2,
        max_size=30,
    )
)
def test_weighted_aucs_equal_scikit_learn_on_the_repeated_hunks(rows):
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.array([label for label, _, _ in rows])
    scores = np.array([score for _, score, _ in rows])
    counts = np.array([count for _, _, count in rows])
    roc, ap = weighted_aucs(labels, scores, counts[None, :])
    expanded_y, expanded_s = np.repeat(labels, counts), np.repeat(scores, counts)
    if len(set(expanded_y)) < 2:
        assert np.isnan(roc[0]) and np.isnan(ap[0])
        return
    assert roc[0] == pytest.approx(roc_auc_score(expanded_y, expanded_s))
    assert ap[0] == pytest.approx(average_precision_score(expanded_y, expanded_s))


def test_pr_auc_and_precision_at_k():
    assert pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert pr_auc([0, 0], [0.3, 0.2]) is None
    assert precision_at([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], 2) == 0.5
    assert precision_at([1, 0], [0.1, 0.9], 10) == 0.5
    # Ties at the cut count in proportion: a constant scorer gets the base rate.
    assert precision_at([1, 0, 0, 0], [0.5] * 4, 2) == 0.25
    assert precision_at([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1], 2) == 0.75


def test_evaluate_generation():
    result = evaluate_generation(["Fix The Typo", "x"], ["fix the typo", "y"], SMALL_STOPWORDS)
    assert result.records == 2
    assert result.exact_match == 0.0
    assert result.bleu4 == bleu4(["Fix The Typo", "x"], ["fix the typo", "y"])
    assert result.bleu4_stopwords_removed is not None
    assert evaluate_generation(["a"], ["a"]).bleu4_stopwords_removed is None


def _full_report() -> EvaluationReport:
    rnp = evaluate_rnp(
        [0.1, 0.8, 0.3, 0.7],
        [0, 1, 0, 1],
        [_hunk(1, 0), _hunk(20, 5), _hunk(2, 2), _hunk(9, 9)],
        [0, 0, 1],
        [_hunk(1, 0), _hunk(3, 0), _hunk(30, 2)],
    )
    return EvaluationReport(
        rnp=rnp,
        rcg=evaluate_generation(["add a test"], ["Please add a test"], SMALL_STOPWORDS),
        cr=evaluate_generation(["x = 1\n"], ["x = 1"]),
        edit=evaluate_generation(["y = 2"], ["y = 3"]),
        records={"rnp": {"train": 3, "test": 4}, "rcg": {"train": 5, "valid": 1, "test": 1}},
        loss={"rnp": [(1, 2.5), (2, 1.25), (3, math.nan)], "rcg <&>": [(1, 3.0), (2, 2.0)]},
    )


def test_write_report_writes_json_markdown_and_well_formed_svgs(tmp_path):
    report = _full_report()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    write_report(bundle, report)

    data = json.loads((bundle / "report.json").read_text(encoding="utf-8"))
    assert data["rnp"]["scorers"]["majority"]["metrics"]["roc_auc"] == 0.5
    assert data["rcg"]["bleu4_stopwords_removed"] is not None
    assert data["cr"]["exact_match"] == 100.0
    assert data["loss"]["rnp"][2] == [3, None]  # a diverged loss is null, not NaN
    assert data["records"]["rcg"]["valid"] == 1

    markdown = (bundle / "report.md").read_text(encoding="utf-8")
    for expected in ("majority class", "LApredict", "ROC AUC", "stop words removed", "| cr |"):
        assert expected in markdown
    assert "| rcg | 5 | 1 | 1 |" in markdown
    assert "| rnp | 3 | 0 | 4 |" in markdown

    for name in ("loss.svg", "rnp_pr.svg"):
        root = ElementTree.parse(bundle / name).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.findall(".//{http://www.w3.org/2000/svg}polyline")
    loss_text = (bundle / "loss.svg").read_text(encoding="utf-8")
    assert "rcg &lt;&amp;&gt;" in loss_text

    metrics = report.metrics()
    assert "loss" not in metrics
    assert "curves" not in metrics["rnp"]
    json.dumps(metrics, allow_nan=False)


def test_write_report_without_data_still_writes_valid_files(tmp_path):
    write_report(tmp_path, EvaluationReport())
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["rnp"] is None
    for name in ("loss.svg", "rnp_pr.svg"):
        root = ElementTree.parse(tmp_path / name).getroot()
        assert "no data" in "".join(root.itertext())


def test_line_chart_handles_a_single_point():
    svg = line_chart_svg({"only": [(5, 1.0)]}, "t", "x", "y")
    assert ElementTree.fromstring(svg).findall(".//{http://www.w3.org/2000/svg}polyline")
