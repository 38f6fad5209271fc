"""Precision and recall of the fix-commit rule (``training.mining.messages.is_fix``) on
the hand-labelled commits in ``tests/fixtures/fix_commits.jsonl``, per project, with 95%
Wilson intervals. ``dev`` projects were read while the rule was written; ``heldout`` ones
were labelled after it was frozen, so only they say how the rule generalises.

    python bench/fix_rule.py [--errors]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from training.mining.messages import is_fix

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fix_commits.jsonl"


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def load(path: Path = FIXTURE) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def scores(rows: list[dict]) -> dict[str, tuple[int, int, int]]:
    """(true positives, predicted, actual fixes) per project, per set and overall."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        predicted = is_fix(f"{row['subject']}\n\n{row['body']}")
        actual = row["label"] == "fix"
        for key in (row["project"], f"[{row['set']}]", "[all]"):
            counts[key][0] += predicted and actual
            counts[key][1] += predicted
            counts[key][2] += actual
    return {key: tuple(value) for key, value in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    rows = load()
    sets = {row["project"]: row["set"] for row in rows}
    sizes: dict[str, int] = defaultdict(int)
    for row in rows:
        for key in (row["project"], f"[{row['set']}]", "[all]"):
            sizes[key] += 1
    print(
        f"{'project':12} {'set':8} {'commits':>7} {'fixes':>5}  precision (95% CI)   recall (95% CI)"
    )
    for key, (tp, predicted, actual) in scores(rows).items():
        p_low, p_high = wilson(tp, predicted)
        r_low, r_high = wilson(tp, actual)
        print(
            f"{key:12} {sets.get(key, ''):8} {sizes[key]:7} {actual:5}  "
            f"{tp / max(predicted, 1):.2f} ({p_low:.2f}-{p_high:.2f})     "
            f"{tp / max(actual, 1):.2f} ({r_low:.2f}-{r_high:.2f})"
        )
    if args.errors:
        for row in rows:
            predicted = is_fix(f"{row['subject']}\n\n{row['body']}")
            if predicted != (row["label"] == "fix"):
                kind = "FP" if predicted else "FN"
                print(f"{kind} [{row['project']}] {row['subject'][:90]!r}  ({row['why']})")


if __name__ == "__main__":
    main()
