"""The editor on the other end, as the server's units see it: what it can do (its
capabilities), what it has open, and how to tell it things (log, messages, diagnostics,
edits, progress). Every unit talks to the client through this one object."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from training.errors import first_line

log = logging.getLogger(__name__)

#: How long a command waits for the client's answer to its ``workspace/applyEdit`` (one
#: that never answers would keep the command waiting until shutdown); tests lower it.
APPLY_EDIT_TIMEOUT_S = 30.0


class Client:
    """The connected editor, over the pygls server ``ls``; ``stopping()`` says whether the
    server is shutting down (long commands then stop as if cancelled)."""

    def __init__(self, ls: LanguageServer, stopping: Callable[[], bool] = lambda: False) -> None:
        self._ls = ls
        self._stopping = stopping
        self._announced: set[str] = set()

    # -- what it can do ----------------------------------------------------------------

    def _can(self, field: str, default: Any = None) -> Any:
        return get_capability(self._ls.client_capabilities, field, default)

    @property
    def pull_diagnostics(self) -> bool:
        """Clients that pull diagnostics get them only when they ask (no pushes too)."""
        return self._can("text_document.diagnostic") is not None

    @property
    def diagnostic_refresh(self) -> bool:
        return bool(self._can("workspace.diagnostics.refresh_support", False))

    @property
    def resolves_edits(self) -> bool:
        """Whether it fetches a code action's edit with ``codeAction/resolve``."""
        properties = self._can("text_document.code_action.resolve_support.properties", [])
        return "edit" in (properties or [])

    @property
    def hover_markdown(self) -> bool:
        formats = self._can("text_document.hover.content_format", [])
        return not formats or types.MarkupKind.Markdown in formats

    # -- what it holds -----------------------------------------------------------------

    def roots(self) -> list[Path]:
        """The workspace folders (or the root) on disk."""
        workspace = self._ls.workspace
        paths = [to_fs_path(folder.uri) for folder in workspace.folders.values()]
        if not paths and workspace.root_path:
            paths = [workspace.root_path]
        return [Path(path) for path in paths if path]

    def is_open(self, uri: str) -> bool:
        return uri in self._ls.workspace.text_documents

    def document(self, uri: str) -> TextDocument:
        """The open document (or, for another URI, the file on disk as pygls reads it)."""
        return self._ls.workspace.get_text_document(uri)

    @property
    def position_codec(self) -> Any:
        return self._ls.workspace.position_codec

    # -- telling it things -------------------------------------------------------------

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.info("%s", message)
        self._ls.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        log.warning("%s", message)
        self._ls.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def show_once(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        """Show ``message`` unless it was shown before in this session."""
        if self.first_time(message):
            self.show(message, kind)

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is asked about in this session."""
        if key in self._announced:
            return False
        self._announced.add(key)
        return True

    def publish(self, uri: str, diagnostics: list[types.Diagnostic], version: int | None) -> None:
        self._ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    def refresh_diagnostics(self) -> None:
        self._ls.workspace_diagnostic_refresh(None)

    def workspace_edit(
        self, uri: str, version: int | None, edits: list[types.TextEdit]
    ) -> types.WorkspaceEdit:
        """A versioned document edit where the client takes one (it refuses the edit if
        the document changed since), else plain changes."""
        if self._can("workspace.workspace_edit.document_changes", False):
            identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
            return types.WorkspaceEdit(
                document_changes=[types.TextDocumentEdit(text_document=identifier, edits=edits)]
            )
        return types.WorkspaceEdit(changes={uri: edits})

    async def apply_edit(self, edit: types.WorkspaceEdit, label: str) -> dict[str, Any]:
        """Send the edit, waiting at most ``APPLY_EDIT_TIMEOUT_S`` for the answer
        (server.protocol drops one that comes later); ``{"applied", "reason"?}``."""
        request = self._ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=label)
        )
        try:
            result = await asyncio.wait_for(request, APPLY_EDIT_TIMEOUT_S)
        except asyncio.TimeoutError:
            waited = f"{APPLY_EDIT_TIMEOUT_S:g} s"
            reason = f"the editor did not answer workspace/applyEdit within {waited}"
        except Exception as error:  # an error answer (Eglot: "Edits on x require version 2 ...")
            reason = f"the editor did not apply the edit: {first_line(error)}"
        else:
            answer: dict[str, Any] = {"applied": bool(result.applied)}
            if result.failure_reason:
                answer["reason"] = result.failure_reason
            return answer
        self.show(f"hunkwise: {reason}")
        return {"applied": False, "reason": reason}

    async def configuration(self, section: str) -> dict[str, Any] | None:
        """The client's settings ``section`` (``workspace/configuration``); None when it
        does not answer such requests or fails to."""
        if not self._can("workspace.configuration", False):
            return None
        try:
            answer = await asyncio.wait_for(
                self._ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=section)])
                ),
                5,
            )
        except Exception as error:
            log.info("workspace/configuration failed: %s", error)
            return None
        first = answer[0] if answer else None
        return dict(first) if isinstance(first, dict) else {}

    # -- long work ---------------------------------------------------------------------

    async def progress(
        self, title: str, message: str | None = None, cancellable: bool = False
    ) -> WorkDone:
        """A server-initiated work-done progress (a no-op for clients without support)."""
        if not self._can("window.work_done_progress", False):
            return WorkDone(self._ls, None)
        token = f"hunkwise-{uuid.uuid4().hex[:12]}"
        try:
            await asyncio.wait_for(self._ls.work_done_progress.create_async(token), 10)
        except Exception as error:  # a client that refuses progress still gets the work done
            log.info("no progress for %r: %s", title, error)
            return WorkDone(self._ls, None)
        self._ls.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title=title, message=message, cancellable=cancellable, percentage=0
            ),
        )
        return WorkDone(self._ls, token)

    def cancel_token(self) -> CancelToken:
        """Whether the client gives up on the request being handled now."""
        return CancelToken(self._ls, self._stopping)


class WorkDone:
    """One server-initiated work-done progress; a no-op without a token."""

    def __init__(self, ls: LanguageServer, token: str | None) -> None:
        self._ls = ls
        self.token = token

    def report(self, message: str | None, percentage: int | None = None) -> None:
        if self.token is not None:
            self._ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def end(self, message: str | None = None) -> None:
        if self.token is not None:
            self._ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self._ls.work_done_progress.tokens.pop(self.token, None)
            self.token = None

    @property
    def cancelled(self) -> bool:
        future = self._ls.work_done_progress.tokens.get(self.token) if self.token else None
        return future is not None and future.cancelled()


class CancelToken:
    """Whether the client gave up on the command being run: ``$/cancelRequest`` for its
    request, or the cancel button of its progress. pygls answers ``$/cancelRequest`` by
    cancelling the request's future but does not stop a running command, so long commands
    poll this."""

    def __init__(self, ls: LanguageServer, stopping: Callable[[], bool]) -> None:
        self._stopping = stopping
        msg_id = ls.protocol.msg_id
        futures: dict[Any, Future] = getattr(ls.protocol, "_request_futures", {})
        self._request = futures.get(msg_id) if msg_id is not None else None
        self._progress: WorkDone | None = None

    def watch(self, progress: WorkDone) -> None:
        self._progress = progress

    @property
    def cancelled(self) -> bool:
        return (
            self._stopping()
            or (self._request is not None and self._request.cancelled())
            or (self._progress is not None and self._progress.cancelled)
        )
