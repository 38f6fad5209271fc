"""The hunkwise language server: one pygls server object, settings and bundle handling on
it, and the LSP features and commands as small functions next to each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import FeatureRequestError, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from server import frames, training_job
from server.model import EngineLoader, ModelHost, ModelState, NoModel, describe_error, load_engine
from server.protocol import HunkwiseProtocol
from server.reviews import Reviewer
from server.settings import SECTION, Settings, merge
from server.text import LineMap, model_safe
from server.workspace import Repositories, disk_path
from training import __version__
from training.config import read_repo_config, repo_layer
from training.errors import HunkwiseError, first_line
from training.review import (
    RULE_ID,
    TOOL_NAME,
    finding_message,
    review_threshold,
    unscorable_message,
)
from training.tasks import ADAPTER_TASKS, RCG, RNP

log = logging.getLogger(__name__)

COMMANDS = (
    "hunkwise.editWithInstruction",
    "hunkwise.applyRefinement",
    "hunkwise.reviewWorkspace",
    "hunkwise.trainFromRepo",
    "hunkwise.reloadBundle",
    "hunkwise.dismiss",
    "hunkwise.status",
)

#: How long a command waits for the client's answer to its ``workspace/applyEdit`` (one
#: that never answers would keep the command waiting until shutdown); tests lower it.
APPLY_EDIT_TIMEOUT_S = 30.0


class WorkDone:
    """One server-initiated work-done progress; a no-op for clients without support."""

    def __init__(self, ls: HunkwiseServer, token: str | None) -> None:
        self._ls = ls
        self.token = token

    @classmethod
    async def begin(
        cls, ls: HunkwiseServer, title: str, message: str | None = None, cancellable: bool = False
    ) -> WorkDone:
        if not get_capability(ls.client_capabilities, "window.work_done_progress", False):
            return cls(ls, None)
        token = f"hunkwise-{uuid.uuid4().hex[:12]}"
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(token), 10)
        except Exception as error:  # a client that refuses progress still gets the work done
            log.info("no progress for %r: %s", title, error)
            return cls(ls, None)
        ls.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title=title, message=message, cancellable=cancellable, percentage=0
            ),
        )
        return cls(ls, token)

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

    def __init__(self, ls: HunkwiseServer) -> None:
        self._ls = ls
        msg_id = ls.protocol.msg_id
        futures: dict[Any, Future] = getattr(ls.protocol, "_request_futures", {})
        self._request = futures.get(msg_id) if msg_id is not None else None
        self._progress: WorkDone | None = None

    def watch(self, progress: WorkDone) -> None:
        self._progress = progress

    @property
    def cancelled(self) -> bool:
        return (
            self._ls.shutting_down
            or (self._request is not None and self._request.cancelled())
            or (self._progress is not None and self._progress.cancelled)
        )


class HunkwiseServer(LanguageServer):
    """The server object: settings, the model host, the reviewer and the repositories."""

    def __init__(
        self,
        loader: EngineLoader = load_engine,
        train_command: Sequence[str] = training_job.TRAIN_COMMAND,
    ) -> None:
        super().__init__(
            name="hunkwise",
            version=__version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=HunkwiseProtocol,
        )
        self.loader = loader
        self.train_command = tuple(train_command)
        self.settings = Settings()
        self.init_options: dict[str, Any] = {}
        self.client_settings: dict[str, Any] = {}
        self.repos = Repositories()
        self.reviewer = Reviewer(self)
        self.host: ModelHost = None  # type: ignore[assignment]  # made in `initialize`
        self.initialized = False
        self.shutting_down = False
        self.shut_down_cleanly = False
        #: why the connection was given up (input that is not LSP's framing), or None
        self.framing_error: str | None = None
        self.training: asyncio.Task | None = None
        #: the loaded bundle's default threshold (None: no bundle loaded)
        self.bundle_threshold: float | None = None
        #: Whether the loaded bundle writes review comments (it has an rcg adapter).
        self.has_comments = True
        #: why the loaded bundle cannot score hunks (it has no rnp adapter), or None
        self.unscored: str | None = None
        self._announced: set[str] = set()
        self._loading: asyncio.Future | None = None
        #: The largest message body a client may send (``hunkwise-lsp --max-message-bytes``).
        self.max_message_bytes = frames.MAX_CONTENT_LENGTH

    # -- the connection ----------------------------------------------------------------

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdin/stdout with server.frames' limits instead of pygls' reader."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        source = frames.StdinFrames(stdin or sys.stdin.buffer, self.thread_pool)
        try:
            self.framing_error = asyncio.run(
                frames.serve_frames(
                    self._stop_event,
                    source,
                    self.protocol,
                    self.report_server_error,
                    self.max_message_bytes,
                )
            )
        except BrokenPipeError:
            log.error("the client closed the connection; stopping")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client at a time on a TCP port, with server.frames' limits."""
        self._stop_event = stop_event = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)  # type: ignore[arg-type]
            self.framing_error = await frames.serve_frames(
                stop_event, reader, self.protocol, self.report_server_error, self.max_message_bytes
            )
            self.shutdown()

        async def serve() -> None:
            self._server = await asyncio.start_server(connection, host, port)
            async with self._server:
                await self._server.serve_forever()

        log.info("serving on %s:%s", host, port)
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(serve())

    # -- what the client can do --------------------------------------------------------

    @property
    def pull_diagnostics(self) -> bool:
        """Clients that pull diagnostics get them only when they ask (no pushes too)."""
        return get_capability(self.client_capabilities, "text_document.diagnostic") is not None

    @property
    def diagnostic_refresh(self) -> bool:
        return bool(
            get_capability(self.client_capabilities, "workspace.diagnostics.refresh_support", False)
        )

    def can_resolve_edits(self) -> bool:
        properties = get_capability(
            self.client_capabilities, "text_document.code_action.resolve_support.properties", []
        )
        return "edit" in (properties or [])

    # -- talking to the user -----------------------------------------------------------

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.info("%s", message)
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        log.warning("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def show_once(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        if message not in self._announced:
            self._announced.add(message)
            self.show(message, kind)

    def workspace_edit(
        self, uri: str, version: int | None, edits: list[types.TextEdit]
    ) -> types.WorkspaceEdit:
        """A versioned document edit where the client takes one (it refuses the edit if
        the document changed since), else plain changes."""
        if get_capability(
            self.client_capabilities, "workspace.workspace_edit.document_changes", False
        ):
            identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
            return types.WorkspaceEdit(
                document_changes=[types.TextDocumentEdit(text_document=identifier, edits=edits)]
            )
        return types.WorkspaceEdit(changes={uri: edits})

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside any request (a bug in a notification handler, a message that is
        not JSON) go to the log, never to a popup: the user cannot act on them."""
        if source is FeatureRequestError:
            return  # answered already, as the request's error response
        if self.protocol.answer_unreadable(error):
            return
        log.error("%s: %s", getattr(source, "__name__", source), describe_error(error))
        self.window_log_message(
            types.LogMessageParams(
                type=types.MessageType.Error,
                message=f"hunkwise: internal error: {describe_error(error)}",
            )
        )

    # -- settings ----------------------------------------------------------------------

    def roots(self) -> list[Path]:
        """The workspace folders (or the root) on disk."""
        paths = [to_fs_path(folder.uri) for folder in self.workspace.folders.values()]
        if not paths and self.workspace.root_path:
            paths = [self.workspace.root_path]
        return [Path(path) for path in paths if path]

    def repo_root(self) -> Path | None:
        for root in self.roots():
            found = self.repos.root_of(root)
            if found is not None:
                return found
        return None

    def repo_settings(self) -> dict[str, Any]:
        """The repository's own configuration (hunkwise.toml or pyproject.toml's
        [tool.hunkwise]): the defaults under the editor's settings. A file that is not
        TOML is shown once and left out."""
        root = self.repo_root()
        if root is None:
            return {}
        try:
            return repo_layer(read_repo_config(root))
        except HunkwiseError as error:
            self.show_once(f"hunkwise: {error}")
            return {}

    def bundle_path(self) -> Path | None:
        """The ``bundle`` setting (relative paths from the first workspace folder), else
        the default location for the workspace's repository."""
        if self.settings.bundle:
            path = Path(self.settings.bundle).expanduser()
            if not path.is_absolute():
                roots = self.roots()
                path = (roots[0] if roots else Path.cwd()) / path
            return path
        root = self.repo_root()
        if root is None:
            return None
        from training.bundle import find_default_bundle

        return find_default_bundle(root)[0]

    async def fetch_configuration(self) -> None:
        """The client's ``hunkwise`` section, when it answers ``workspace/configuration``."""
        if not get_capability(self.client_capabilities, "workspace.configuration", False):
            return
        try:
            answer = await asyncio.wait_for(
                self.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
                ),
                5,
            )
        except Exception as error:
            log.info("workspace/configuration failed: %s", error)
            return
        first = answer[0] if answer else None
        self.client_settings = dict(first) if isinstance(first, dict) else {}

    def update_settings(self) -> None:
        """Merge initializationOptions and the client's settings; report bad values; act
        on what changed."""
        settings, problems, unknown = merge(
            [self.repo_settings(), self.init_options, self.client_settings]
        )
        for problem in problems:
            self.show_once(problem.message)
        for key in unknown:
            if key not in self._announced:
                self._announced.add(key)
                log.info("ignoring unknown setting %s.%s", SECTION, key)
        old, self.settings = self.settings, settings
        if self.initialized and old != settings:
            self._settings_changed(old, settings)

    def _settings_changed(self, old: Settings, new: Settings) -> None:
        bundle_changed = old.bundle != new.bundle or old.device != new.device
        if bundle_changed:
            self._loading = asyncio.ensure_future(self.load_bundle())
        elif old.max_new_tokens != new.max_new_tokens and self.host.engine is not None:
            self.host.engine.max_new_tokens = new.max_new_tokens
        review_fields = ("threshold", "comments", "severity", "exclude", "diff_base")
        if not bundle_changed and any(
            getattr(old, name) != getattr(new, name) for name in (*review_fields, "max_new_tokens")
        ):
            self.reviewer.review_all()

    @property
    def threshold(self) -> float | None:
        """The threshold reviews use: the setting, else the loaded bundle's (None: neither,
        so nothing is flagged)."""
        if self.bundle_threshold is None:
            return self.settings.threshold
        return review_threshold(self.settings.threshold, self.bundle_threshold)

    # -- the bundle --------------------------------------------------------------------

    async def load_bundle(self) -> None:
        """Load (or reload) the bundle in the background with progress; reviews wait for
        it, everything else is answered meanwhile."""
        bundle = self.bundle_path()
        if bundle is None:
            self.host.state = ModelState.NO_BUNDLE
            self.host.message = (
                "the workspace is not a git repository, so there is no default bundle; "
                "set `hunkwise.bundle`"
            )
            self.show_once(f"hunkwise: {self.host.message}")
            self.reviewer.review_all()
            return
        progress = await WorkDone.begin(self, "hunkwise: loading the review model", str(bundle))
        outcome = await self.host.load(bundle, self.settings.device, self.settings.max_new_tokens)
        if outcome.superseded:
            progress.end("superseded by a newer load")
            return
        self.reviewer.forget_reviews()
        engine = self.host.engine
        self.bundle_threshold = None
        self.unscored = None
        if outcome.state is ModelState.READY and engine is not None:
            adapters = ", ".join(getattr(engine.info, "adapters", ())) or "none"
            progress.end(f"loaded ({adapters}) on {self.host.device}")
            self.log(
                f"hunkwise: loaded the bundle at {bundle} (adapters: {adapters}) "
                f"on {self.host.device} in {outcome.seconds:.1f} s"
            )
            self.bundle_threshold = engine.default_threshold
            self.has_comments = engine.has_task(RCG)
            if not engine.has_task(RNP):
                # Once per load: reviews stay empty, the edit adapters keep working.
                self.unscored = await _unscorable(bundle)
                self.show(f"hunkwise: {self.unscored}", types.MessageType.Warning)
        elif outcome.state is ModelState.NO_BUNDLE:
            progress.end("no bundle")
            root = self.repo_root() or (self.roots() or [Path(".")])[0]
            self.show_once(
                f"hunkwise: no trained bundle at {bundle}, so there are no reviews yet. "
                f"Train one for this repository with `hunkwise train-from-repo {root} --base tiny` "
                "(or the command hunkwise.trainFromRepo), or with `hunkwise train ... "
                f"--out {bundle}`; or point the `hunkwise.bundle` setting at a bundle.",
                types.MessageType.Warning,
            )
        else:
            progress.end("failed")
            self.show_once(
                f"hunkwise: cannot load the bundle at {bundle}: {outcome.message}",
                types.MessageType.Error,
            )
        self.reviewer.review_all()

    def close(self) -> None:
        """Stop the model worker and close git's helper processes (any thread). Also run
        when the client goes away without a shutdown."""
        self.shutting_down = True
        self.reviewer.close()
        if self.host is not None:
            self.host.stop()
        self.repos.close()

    def status(self) -> dict[str, Any]:
        host = self.host
        info = host.engine.info if host.engine is not None else None
        return {
            "state": host.state.value,
            "bundle": str(host.bundle or self.bundle_path() or ""),
            "base": self.settings.diff_base,
            "adapters": list(getattr(info, "adapters", ())),
            "device": host.device if info is not None else None,
            "queue": host.queue_length,
            "busy": host.busy,
            "jobsRun": host.jobs_run,
            "generationsInterrupted": host.jobs_interrupted,
            "cacheHits": self.reviewer.scores.hits + self.reviewer.comments.hits,
            "cacheMisses": self.reviewer.scores.misses + self.reviewer.comments.misses,
            "documents": self.reviewer.document_count,
            "training": self.training is not None and not self.training.done(),
            "pullDiagnostics": self.pull_diagnostics,
            "threshold": self.threshold,
            "message": host.message or self.unscored or "",
            "version": __version__,
        }


async def _unscorable(bundle: Path) -> str:
    """What to say about a bundle without an rnp adapter, with the reason its manifest
    records (read off the event loop)."""

    def read() -> str:
        from training.bundle import read_manifest

        try:
            manifest = read_manifest(bundle)
        except HunkwiseError:  # a loader that takes bundles without a manifest
            manifest = None
        return unscorable_message(bundle, manifest)

    return await asyncio.get_running_loop().run_in_executor(None, read)


# -- lifecycle -----------------------------------------------------------------------------


def initialize(ls: HunkwiseServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    if isinstance(options, dict):
        # Some clients nest the section: {"hunkwise": {...}}.
        nested = options.get(SECTION)
        ls.init_options = dict(nested) if isinstance(nested, dict) else dict(options)
    if ls.host is not None:  # HunkwiseProtocol refuses a second initialize already
        return
    ls.host = ModelHost(asyncio.get_running_loop(), ls.loader)
    ls.host.state = ModelState.LOADING
    ls.host.start()


async def initialized(ls: HunkwiseServer, params: types.InitializedParams) -> None:
    ls.update_settings()
    await ls.fetch_configuration()
    ls.update_settings()
    ls.initialized = True
    await ls.load_bundle()


async def shutdown(ls: HunkwiseServer, params: None) -> None:
    ls.shutting_down = True
    if ls.training is not None and not ls.training.done():
        ls.training.cancel()
        await asyncio.wait([ls.training], timeout=15)
    ls.reviewer.stop()
    await asyncio.get_running_loop().run_in_executor(None, ls.close)
    ls.shut_down_cleanly = True


# -- documents -----------------------------------------------------------------------------


def did_open(ls: HunkwiseServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.reviewer.opened(params.text_document.uri)


def did_change(ls: HunkwiseServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.reviewer.changed(params.text_document.uri)


def did_save(ls: HunkwiseServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.reviewer.saved(params.text_document.uri)


def did_close(ls: HunkwiseServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.reviewer.closed(params.text_document.uri)


async def did_change_configuration(
    ls: HunkwiseServer, params: types.DidChangeConfigurationParams
) -> None:
    pushed = params.settings.get(SECTION) if isinstance(params.settings, dict) else None
    if isinstance(pushed, dict):
        ls.client_settings = dict(pushed)
    else:
        await ls.fetch_configuration()
    ls.update_settings()


# -- diagnostics, hover, code actions ------------------------------------------------------


async def document_diagnostic(
    ls: HunkwiseServer, params: types.DocumentDiagnosticParams
) -> types.DocumentDiagnosticReport:
    return await ls.reviewer.pull(params.text_document.uri, params.previous_result_id)


def hover(ls: HunkwiseServer, params: types.HoverParams) -> types.Hover | None:
    found = ls.reviewer.flagged_at(params.text_document.uri, params.position)
    if found is None:
        return None
    review, item = found
    formats = get_capability(ls.client_capabilities, "text_document.hover.content_format", [])
    markdown = not formats or types.MarkupKind.Markdown in formats
    # Markdown for clients that take it (the model's and history's words as literal
    # text), else plain text.
    literal = _markdown_text if markdown else (lambda text: text)

    def note(text: str) -> str:
        return f"_{text}_" if markdown else text

    if not ls.settings.comments:
        comment = note("Review comments are off (hunkwise.comments).")
    elif not ls.has_comments:
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
    if not item.comment and item.evidence and ls.settings.comments:
        comment += "\n\n" + literal(finding_message(item.probability, "", item.evidence))
    parts = [
        (
            "**hunkwise: this change may need review**"
            if markdown
            else "hunkwise: this change may need review"
        )
        + f" (p = {item.probability:.2f})",
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


def _allowed(kind: str, only: Sequence[str] | None) -> bool:
    return not only or any(kind == want or kind.startswith(f"{want}.") for want in only)


def code_action(
    ls: HunkwiseServer, params: types.CodeActionParams
) -> list[types.CodeAction] | None:
    uri = params.text_document.uri
    only = params.context.only
    actions: list[types.CodeAction] = []
    state = ls.reviewer.state(uri)
    review = state.review if state is not None else None
    if review is not None and _allowed(types.CodeActionKind.QuickFix, only):
        ours: dict[str, types.Diagnostic | None] = {}
        for diagnostic in params.context.diagnostics:
            data = diagnostic.data
            if (
                diagnostic.source == TOOL_NAME
                and diagnostic.code == RULE_ID
                and isinstance(data, dict)
            ):
                ours.setdefault(str(data.get("hunk")), diagnostic)
        for item in ls.reviewer.flagged_in(uri, params.range):
            ours.setdefault(item.hunk.id, None)
        for hunk_id, diagnostic in ours.items():
            if review.find(hunk_id) is None:
                continue
            actions.extend(_finding_actions(ls, uri, hunk_id, review.version, diagnostic))
    selection = params.range
    if selection.start != selection.end and _allowed(types.CodeActionKind.RefactorRewrite, only):
        argument = {"uri": uri, "range": _range_json(selection)}
        title = "Edit selection with instruction…"
        actions.append(
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.RefactorRewrite,
                command=types.Command(
                    title=title, command="hunkwise.editWithInstruction", arguments=[argument]
                ),
            )
        )
    return actions or None


def _finding_actions(
    ls: HunkwiseServer,
    uri: str,
    hunk_id: str,
    version: int | None,
    diagnostic: types.Diagnostic | None,
) -> list[types.CodeAction]:
    diagnostics = [diagnostic] if diagnostic is not None else None
    argument = {"uri": uri, "hunk": hunk_id}
    refine = types.CodeAction(
        title="Apply suggested refinement",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=diagnostics,
        is_preferred=True,
    )
    if ls.can_resolve_edits():
        refine.data = {**argument, "version": version}  # the edit comes from codeAction/resolve
    else:
        refine.command = types.Command(
            title=refine.title, command="hunkwise.applyRefinement", arguments=[argument]
        )
    dismiss_title = "Dismiss this review finding"
    dismiss = types.CodeAction(
        title=dismiss_title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=diagnostics,
        command=types.Command(
            title=dismiss_title, command="hunkwise.dismiss", arguments=[argument]
        ),
    )
    return [refine, dismiss]


async def code_action_resolve(ls: HunkwiseServer, action: types.CodeAction) -> types.CodeAction:
    data = action.data
    if action.edit is not None or not isinstance(data, dict) or "hunk" not in data:
        return action
    try:
        action.edit = await ls.reviewer.refinement(str(data.get("uri")), str(data["hunk"]))
    except (HunkwiseError, NoModel) as error:
        # Editors resolve on hover of the menu item: log, do not pop up messages.
        ls.log(f"hunkwise: no refinement: {error}")
    except Exception as error:
        ls.reviewer.report_model_error(error)
    return action


# -- commands ------------------------------------------------------------------------------


def _argument(args: Sequence[Any], *required: str) -> dict[str, Any]:
    first = args[0] if args else None
    if not isinstance(first, dict) or any(key not in first for key in required):
        raise JsonRpcInvalidParams(
            f"expected one object argument with {', '.join(repr(k) for k in required)}"
        )
    return first


def _range_json(area: types.Range) -> dict[str, Any]:
    return {
        "start": {"line": area.start.line, "character": area.start.character},
        "end": {"line": area.end.line, "character": area.end.character},
    }


def _range_of(value: Any) -> types.Range:
    try:
        return types.Range(
            start=types.Position(int(value["start"]["line"]), int(value["start"]["character"])),
            end=types.Position(int(value["end"]["line"]), int(value["end"]["character"])),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise JsonRpcInvalidParams(f"'range' is not an LSP range: {error}") from None


async def _apply(ls: HunkwiseServer, edit: types.WorkspaceEdit, label: str) -> dict[str, Any]:
    """Send the edit to the client, waiting at most ``APPLY_EDIT_TIMEOUT_S`` for its
    answer (server.protocol drops one that comes later)."""
    request = ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=label))
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
    ls.show(f"hunkwise: {reason}")
    return {"applied": False, "reason": reason}


async def _model_command(ls: HunkwiseServer, work, label: str) -> dict[str, Any]:
    try:
        edit = await work
    except (HunkwiseError, NoModel) as error:
        message = str(error) or "no bundle is loaded"
        ls.show(f"hunkwise: {message}")
        return {"applied": False, "reason": message}
    except Exception as error:
        ls.reviewer.report_model_error(error)
        return {"applied": False, "reason": describe_error(error)}
    return await _apply(ls, edit, label)


def _workspace_document(ls: HunkwiseServer, uri: Any) -> str:
    """``uri`` when a command may act on it: a document the client has open, or a file
    inside a workspace folder; otherwise the request fails saying why."""
    uri = str(uri)
    if uri in ls.workspace.text_documents:
        return uri
    path = disk_path(uri)
    if path is None:
        raise JsonRpcInvalidParams(
            f"{uri} is not open and not a file on disk; hunkwise acts only on open "
            "documents and files inside a workspace folder"
        )
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
        raise JsonRpcInvalidParams(f"cannot read {uri}: {error}") from None
    if not any(resolved.is_relative_to(root.resolve()) for root in ls.roots()):
        raise JsonRpcInvalidParams(
            f"hunkwise acts only on open documents and files inside a workspace folder, "
            f"and {uri} is neither"
        )
    if not resolved.exists():
        raise JsonRpcInvalidParams(
            f"{uri} is not open and there is no such file on disk (deleted, or never saved)"
        )
    return uri


async def edit_with_instruction(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    argument = _argument(args, "uri", "range")
    uri = _workspace_document(ls, argument["uri"])
    selection = _range_of(argument["range"])
    instruction = str(argument.get("instruction") or "").strip()
    limit = ls.settings.max_instruction_chars
    if len(instruction) > limit:
        raise JsonRpcInvalidParams(
            f"the instruction has {len(instruction)} characters, over the "
            f"{limit} of `hunkwise.maxInstructionChars`; shorten it or raise the setting"
        )
    document = ls.workspace.get_text_document(uri)  # read once: the edit is of this text
    try:
        lines = LineMap(document.source, ls.workspace.position_codec)
    except FileNotFoundError:
        raise JsonRpcInvalidParams(
            f"{uri} is not open and there is no such file on disk (deleted, or never saved)"
        ) from None
    except OSError as error:
        raise JsonRpcInvalidParams(f"cannot read {uri}: {error.strerror or error}") from None
    if not (lines.has_line(selection.start) and lines.has_line(selection.end)):
        raise JsonRpcInvalidParams(
            f"the range reaches line {max(selection.start.line, selection.end.line)}, "
            f"past the end of {uri} ({lines.line_count} lines)"
        )
    if not instruction:
        ls.show(
            "hunkwise: editWithInstruction needs an instruction "
            '({"uri", "range", "instruction"}); this editor did not ask for one',
            types.MessageType.Info,
        )
        return {"applied": False, "reason": "no instruction"}
    work = ls.reviewer.instruction_edit(uri, lines, document.version, selection, instruction)
    return await _model_command(ls, work, "hunkwise: edit with instruction")


async def apply_refinement(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    argument = _argument(args, "uri", "hunk")
    uri = _workspace_document(ls, argument["uri"])
    work = ls.reviewer.refinement(uri, str(argument["hunk"]))
    return await _model_command(ls, work, "hunkwise: apply suggested refinement")


def dismiss(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    argument = _argument(args, "uri", "hunk")
    uri, hunk = str(argument["uri"]), str(argument["hunk"])
    if not ls.reviewer.knows(hunk):
        return {"dismissed": False, "reason": f"no finding of hunk {hunk!r} to dismiss"}
    return {"dismissed": ls.reviewer.dismiss(uri, hunk)}


def status(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    return ls.status()


async def reload_bundle(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    await ls.load_bundle()
    return ls.status()


async def review_workspace(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    token = CancelToken(ls)
    progress = await WorkDone.begin(ls, "hunkwise: reviewing changed files", cancellable=True)
    token.watch(progress)
    try:
        result = await ls.reviewer.review_workspace(
            ls.roots(), lambda: token.cancelled, progress.report
        )
    except HunkwiseError as error:
        progress.end("failed")
        ls.show(f"hunkwise: {error}")
        return {"files": 0, "reviewed": 0, "flagged": 0, "cancelled": False, "error": str(error)}
    progress.end(
        "cancelled"
        if result["cancelled"]
        else f"{result['reviewed']} files, {result['flagged']} findings"
    )
    return result


def _train_base(value: Any) -> str:
    """The ``base`` argument of hunkwise.trainFromRepo (unset: ``tiny``)."""
    if value is None or value == "":
        return "tiny"
    if not isinstance(value, str) or not value.strip():
        raise JsonRpcInvalidParams(
            f"'base' must be a string: tiny, a local model directory or a hub id "
            f"(got {_shown(value)})"
        )
    if model_safe(value) != value:
        raise JsonRpcInvalidParams("'base' holds a NUL or a lone surrogate: no model is named so")
    return value.strip()


def _train_tasks(value: Any) -> list[str]:
    """The ``tasks`` argument of hunkwise.trainFromRepo: a list of tasks or a comma string
    (unset or empty: every task)."""
    known = ", ".join(ADAPTER_TASKS)
    if value is None:
        return []
    if isinstance(value, str):
        value = [task.strip() for task in value.split(",") if task.strip()]
    if not isinstance(value, list) or not all(isinstance(task, str) for task in value):
        raise JsonRpcInvalidParams(
            f"'tasks' must be a list of {known}, or one comma-separated string "
            f"(got {_shown(value)})"
        )
    unknown = [task for task in value if task not in ADAPTER_TASKS]
    if unknown:
        raise JsonRpcInvalidParams(
            f"'tasks' has unknown tasks {', '.join(map(_shown, unknown))}; the tasks are {known}"
        )
    return list(dict.fromkeys(value))


def _shown(value: Any) -> str:
    """A client's value in a message, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _trainer_base(root: Path, base: str) -> str:
    """``base`` as the trainer, which runs in ``root``, reads it: a relative path names a
    directory of the repository, so the check here looks where the trainer will."""
    if base == "tiny" or Path(base).expanduser().is_absolute():
        return base
    in_root = root / base
    return str(in_root) if in_root.exists() or base.startswith(".") else base


async def train_from_repo(ls: HunkwiseServer, *args: Any) -> dict[str, Any]:
    argument = args[0] if args else None
    if argument is None:
        argument = {}
    if not isinstance(argument, dict):
        raise JsonRpcInvalidParams(
            f"expected one object argument {{base?, tasks?}} (got {_shown(argument)})"
        )
    base, tasks = _train_base(argument.get("base")), _train_tasks(argument.get("tasks"))
    root, bundle = ls.repo_root(), ls.bundle_path()
    if root is None or bundle is None:
        ls.show("hunkwise: trainFromRepo needs a workspace inside a git repository")
        return {"trained": False, "reason": "not a git repository"}
    base = _trainer_base(root, base)
    from training.models import check_base

    try:  # before anything starts: a base that cannot load would fail after the mining
        await asyncio.get_running_loop().run_in_executor(None, check_base, base)
    except HunkwiseError as error:
        reason = str(error)
        ls.show(f"hunkwise: cannot train: {reason}")
        return {"trained": False, "reason": reason}
    if ls.training is not None and not ls.training.done():
        return {"trained": False, "reason": "a training run is already going on"}
    token = CancelToken(ls)
    progress = await WorkDone.begin(
        ls, "hunkwise: training on this repository", f"{root} -> {bundle}", cancellable=True
    )
    token.watch(progress)

    def relay(line: str) -> None:
        said = training_job.read_progress(line)
        progress.report(said.message, said.percentage)

    command = training_job.train_arguments(ls.train_command, root, bundle, base, tasks)
    ls.log(f"hunkwise: running {' '.join(command)}")
    ls.training = asyncio.ensure_future(
        training_job.run_training(command, root, relay, lambda: token.cancelled)
    )
    try:
        outcome = await ls.training
    except asyncio.CancelledError:
        progress.end("stopped")
        return {"trained": False, "cancelled": True}
    except OSError as error:
        progress.end("failed")
        ls.show(f"hunkwise: cannot start the trainer: {error}", types.MessageType.Error)
        return {"trained": False, "reason": str(error)}
    if outcome.cancelled:
        progress.end("cancelled; the previous bundle, if any, is unchanged")
        return {"trained": False, "cancelled": True}
    if outcome.returncode != 0:
        progress.end("failed")
        last = outcome.output.strip().splitlines()[-1:] or [f"exit status {outcome.returncode}"]
        ls.show(f"hunkwise: training failed: {last[0]}", types.MessageType.Error)
        return {"trained": False, "returncode": outcome.returncode, "output": outcome.output}
    progress.end(f"bundle written to {bundle}")
    await ls.load_bundle()
    return {"trained": True, "bundle": str(bundle), "state": ls.host.state.value}


# -- assembly ------------------------------------------------------------------------------


def create_server(
    loader: EngineLoader = load_engine,
    train_command: Sequence[str] = training_job.TRAIN_COMMAND,
) -> HunkwiseServer:
    """A server with every feature registered; ``loader`` and ``train_command`` are the
    real engine and trainer unless a test passes stand-ins."""
    ls = HunkwiseServer(loader, train_command)
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.SHUTDOWN)(shutdown)
    ls.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))(did_save)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=TOOL_NAME, inter_file_dependencies=False, workspace_diagnostics=False
        ),
    )(document_diagnostic)
    ls.feature(types.TEXT_DOCUMENT_HOVER)(hover)
    ls.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[
                types.CodeActionKind.QuickFix,
                types.CodeActionKind.RefactorRewrite,
            ],
            resolve_provider=True,
        ),
    )(code_action)
    ls.feature(types.CODE_ACTION_RESOLVE)(code_action_resolve)
    for name, handler in zip(
        COMMANDS,
        (
            edit_with_instruction,
            apply_refinement,
            review_workspace,
            train_from_repo,
            reload_bundle,
            dismiss,
            status,
        ),
        strict=True,
    ):
        ls.command(name)(handler)
    return ls
