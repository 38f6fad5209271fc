"""The evaluation report of a bundle: :class:`EvaluationReport` (every section, the record
counts and the training loss), rendered as ``report.json``, ``report.md`` and two
hand-written SVG plots (``loss.svg``, ``rnp_pr.svg``), written into the bundle with its
numbers in ``manifest.metrics``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from training.evidence import EvidenceReport
from training.metrics import GenerationReport, RnpReport


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


def write_bundle_report(bundle: Path, report: EvaluationReport) -> None:
    """Write the report files into the bundle and its numbers into ``manifest.metrics``."""
    from training.bundle import read_manifest, write_manifest

    write_report(bundle, report)
    manifest = read_manifest(bundle)
    manifest.metrics = report.metrics()
    write_manifest(bundle, manifest)
