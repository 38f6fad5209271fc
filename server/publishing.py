"""Diagnostics from reviews: one per finding, published when they change, pushed to
clients that take pushes and announced by a refresh to clients that pull them; and the
pull request's answer (``textDocument/diagnostic``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from lsprotocol import types

from server.client import Client
from server.features import feature
from server.findings import FindingRule, ReviewedHunk
from server.scheduling import DocumentState, Scheduler
from server.settings import Settings
from training.review import finding_text
from training.tasks import RULE_ID, TOOL_NAME


class Publisher:
    """Turns each document's latest review into the diagnostics the client shows."""

    def __init__(
        self,
        client: Client,
        scheduler: Scheduler,
        settings: Callable[[], Settings],
        flagged: FindingRule,
    ) -> None:
        self._client = client
        self._scheduler = scheduler
        self._settings = settings
        self.flagged = flagged
        self._result_ids = itertools.count(1)
        self._refresh_pending = False

    def diagnostic(self, item: ReviewedHunk) -> types.Diagnostic:
        settings = self._settings()
        comment = item.comment if settings.comments else None
        return types.Diagnostic(
            range=item.range,
            message=finding_text(item.probability, comment, item.evidence),
            severity=settings.diagnostic_severity,
            code=RULE_ID,
            source=TOOL_NAME,
            data={"hunk": item.hunk.id, "p": round(item.probability, 2)},
        )

    def diagnostics(self, state: DocumentState) -> list[types.Diagnostic]:
        if state.review is None:
            return []
        return [self.diagnostic(item) for item in state.review.hunks if self.flagged(item)]

    def publish(self, state: DocumentState) -> None:
        """Show ``state``'s findings, if they changed since they were last shown."""
        diagnostics = self.diagnostics(state)
        version = state.review.version if state.review is not None else None
        if diagnostics == state.published and version == state.published_version:
            return
        if state.review is None and not state.published:
            return  # nothing reviewed, nothing shown: no need to say so
        state.published, state.published_version = diagnostics, version
        state.result_id = str(next(self._result_ids))
        if state.is_open and self._client.pull_diagnostics:
            self._request_refresh()
        else:
            self._client.publish(state.uri, diagnostics, version)

    def withdraw(self, uri: str) -> None:
        """Take back what was pushed for ``uri``."""
        self._client.publish(uri, [], None)

    def _request_refresh(self) -> None:
        """Ask a pulling client to pull again (coalesced to one request per loop turn)."""
        if not self._client.diagnostic_refresh or self._refresh_pending:
            return
        self._refresh_pending = True

        def send() -> None:
            self._refresh_pending = False
            self._client.refresh_diagnostics()

        asyncio.get_running_loop().call_soon(send)

    @feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=TOOL_NAME, inter_file_dependencies=False, workspace_diagnostics=False
        ),
    )
    async def document_diagnostic(
        self, params: types.DocumentDiagnosticParams
    ) -> types.DocumentDiagnosticReport:
        state = self._scheduler.get(params.text_document.uri)
        if state is None:
            return types.RelatedFullDocumentDiagnosticReport(items=[])
        # Without refresh support a later comment could not reach the client: wait for it.
        await self._scheduler.wait(state, complete=not self._client.diagnostic_refresh)
        previous = params.previous_result_id
        if previous is not None and previous == state.result_id:
            return types.RelatedUnchangedDocumentDiagnosticReport(result_id=state.result_id)
        return types.RelatedFullDocumentDiagnosticReport(
            items=list(state.published or []), result_id=state.result_id
        )
