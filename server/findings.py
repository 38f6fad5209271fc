"""A review's result: one document version's hunks with their P(review needed), where
they are in the buffer, and the comment and evidence fetched after the score; and the
rule for which of them are findings (flagged and not dismissed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lsprotocol import types

from server.text import LineMap
from server.workspace import BaseText
from training.evidence import Evidence
from training.hunks import Hunk
from training.review import is_flagged


@dataclass
class ReviewedHunk:
    """One hunk of a review, its P(review needed), where it is, its comment ("" when the
    bundle has no comment model or the model said nothing) and its evidence (the past
    fixed changes most like it), both fetched after the score."""

    hunk: Hunk
    probability: float
    range: types.Range
    comment: str | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass
class Review:
    """The result for one version of one document."""

    uri: str
    version: int | None
    lines: LineMap
    base: BaseText
    bundle: str
    hunks: list[ReviewedHunk]

    def find(self, hunk_id: str) -> ReviewedHunk | None:
        return next((item for item in self.hunks if item.hunk.id == hunk_id), None)


class FindingRule:
    """Which reviewed hunks are findings: P(yes) at or over the threshold in force
    (``threshold()``: None flags nothing), and not dismissed (``dismissed``, the hunk ids
    dismissed in this session, kept up to date by its owner)."""

    def __init__(self, threshold: Callable[[], float | None], dismissed: set[str]) -> None:
        self._threshold = threshold
        self.dismissed = dismissed

    def __call__(self, item: ReviewedHunk) -> bool:
        threshold = self._threshold()
        return (
            threshold is not None
            and is_flagged(item.probability, threshold)
            and item.hunk.id not in self.dismissed
        )


def contains(area: types.Range, position: types.Position) -> bool:
    # Finding ranges are whole lines (or a point at a line start): compare lines only, so
    # a hover past a line's last character still counts.
    return area.start.line <= position.line <= area.end.line


def overlaps(area: types.Range, selection: types.Range) -> bool:
    return area.start.line <= selection.end.line and selection.start.line <= area.end.line
