"""The hover on a finding: its score, its review comment (or why there is none), the
past fixed changes like it, and which bundle and base the review used."""

from __future__ import annotations

import re

from lsprotocol import types

from server.bundles import LoadedBundle
from server.client import Client
from server.configuration import Configuration
from server.features import feature
from server.reviews import Reviewer
from training.review import finding_message


class FindingHover:
    def __init__(
        self,
        client: Client,
        configuration: Configuration,
        bundle: LoadedBundle,
        reviewer: Reviewer,
    ) -> None:
        self._client = client
        self._configuration = configuration
        self._bundle = bundle
        self._reviewer = reviewer

    @feature(types.TEXT_DOCUMENT_HOVER)
    def hover(self, params: types.HoverParams) -> types.Hover | None:
        found = self._reviewer.flagged_at(params.text_document.uri, params.position)
        if found is None:
            return None
        review, item = found
        comments_on = self._configuration.settings.comments
        markdown = self._client.hover_markdown
        # Markdown for clients that take it (the model's and history's words as literal
        # text), else plain text.
        literal = _markdown_text if markdown else (lambda text: text)

        def note(text: str) -> str:
            return f"_{text}_" if markdown else text

        if not comments_on:
            comment = note("Review comments are off (hunkwise.comments).")
        elif not self._bundle.has_comments:
            comment = note(
                "No comment model in this bundle (it has no rcg adapter): the score is all it has."
            )
        elif item.comment is None:
            comment = note("Review comment pending…")
        else:
            comment = (
                literal(item.comment)
                if item.comment
                else note("The model gave no comment for this hunk.")
            )
        if not item.comment and item.evidence and comments_on:
            comment += "\n\n" + literal(finding_message(item.probability, "", item.evidence))
        title = "hunkwise: this change may need review"
        parts = [
            (f"**{title}**" if markdown else title) + f" (p = {item.probability:.2f})",
            comment,
        ]
        if item.evidence:
            bullets = "\n".join(f"- {literal(e.summary)}" for e in item.evidence)
            parts.append(f"Changes like this one were fixed later (newest first):\n\n{bullets}")
        bundle = f"`{review.bundle}`" if markdown else str(review.bundle)
        parts.append(f"bundle: {bundle} · base: {review.base.label}")
        kind = types.MarkupKind.Markdown if markdown else types.MarkupKind.PlainText
        return types.Hover(
            contents=types.MarkupContent(kind=kind, value="\n\n".join(parts)), range=item.range
        )


def _markdown_text(text: str) -> str:
    """A model's or a commit's words as literal Markdown: its punctuation escaped."""
    return re.sub(r"([\\`*_\[\]<>|~])", r"\\\1", " ".join(text.split()))
