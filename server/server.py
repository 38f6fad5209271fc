"""The hunkwise language server: the pygls server object, its connection and lifecycle,
and the assembly of its units (server.features registers the handlers each declares):

- server.client: the editor on the other end (capabilities, messages, edits, progress);
- server.configuration: settings from the repository, initializationOptions, the client;
- server.bundles: the bundle reviews use, loaded in the background (server.model);
- server.reviews: the review pipeline, with server.scheduling (when reviews run),
  server.publishing (diagnostics) and server.dismissals;
- server.hover, server.edits (code actions and model-backed edits), server.commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

from server import frames, training_job
from server.bundles import LoadedBundle
from server.client import Client
from server.commands import WorkspaceCommands
from server.configuration import Configuration
from server.edits import ModelEdits
from server.features import feature, register
from server.hover import FindingHover
from server.model import EngineLoader, ModelHost, ModelState, describe_error, load_engine
from server.protocol import HunkwiseProtocol
from server.reviews import Reviewer
from server.settings import Settings
from server.workspace import Repositories
from training import __version__

log = logging.getLogger(__name__)

#: The commands of docs/architecture.md section 6, in its order.
COMMANDS = (
    "hunkwise.editWithInstruction",
    "hunkwise.applyRefinement",
    "hunkwise.reviewWorkspace",
    "hunkwise.trainFromRepo",
    "hunkwise.reloadBundle",
    "hunkwise.dismiss",
    "hunkwise.status",
)


class HunkwiseServer(LanguageServer):
    """The server object: its units, the connection and the lifecycle."""

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
        self.shutting_down = False
        self.shut_down_cleanly = False
        #: why the connection was given up (input that is not LSP's framing), or None
        self.framing_error: str | None = None
        #: The largest message body a client may send (``hunkwise-lsp --max-message-bytes``).
        self.max_message_bytes = frames.MAX_CONTENT_LENGTH
        self.client = Client(self, lambda: self.shutting_down)
        self.repos = Repositories()
        self.configuration = Configuration(self.client, self.repos)
        self.host = ModelHost(loader)
        self.bundle = LoadedBundle(self.host, self.configuration, self.client)
        self.reviewer = Reviewer(
            self.client, self.configuration, self.host, self.repos, self.bundle
        )
        self.edits = ModelEdits(self.client, self.configuration, self.host, self.reviewer)
        self.commands = WorkspaceCommands(
            self.client,
            self.configuration,
            self.host,
            self.bundle,
            self.reviewer,
            train_command,
            self.status,
        )
        self.bundle.on_replaced(self.edits.forget)
        self.bundle.on_loaded(self.reviewer.review_all)
        self.configuration.on_change(self._settings_changed)
        commands = register(
            self,
            self,
            self.configuration,
            self.reviewer,
            self.reviewer.publisher,
            self.reviewer.dismissals,
            FindingHover(self.client, self.configuration, self.bundle, self.reviewer),
            self.edits,
            self.commands,
        )
        if sorted(commands) != sorted(COMMANDS):
            raise RuntimeError(f"the registered commands {commands} are not {COMMANDS}")

    @property
    def settings(self) -> Settings:
        return self.configuration.settings

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

    # -- lifecycle ---------------------------------------------------------------------

    @feature(types.INITIALIZE)
    def on_initialize(self, params: types.InitializeParams) -> None:
        self.configuration.take_initialization_options(params.initialization_options)
        if self.host.running:  # HunkwiseProtocol refuses a second initialize already
            return
        self.host.state = ModelState.LOADING
        self.host.start(asyncio.get_running_loop())

    @feature(types.INITIALIZED)
    async def on_initialized(self, params: types.InitializedParams) -> None:
        self.configuration.update()
        await self.configuration.fetch()
        self.configuration.update()
        self.configuration.live = True
        await self.bundle.load()

    @feature(types.SHUTDOWN)
    async def on_shutdown(self, params: None) -> None:
        self.shutting_down = True
        await self.commands.stop_training()
        self.reviewer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.close)
        self.shut_down_cleanly = True

    def _settings_changed(self, old: Settings, new: Settings) -> None:
        bundle_changed = any(
            getattr(old, name) != getattr(new, name)
            for name in ("bundle", "device", "engine", "engine_model")
        )
        if bundle_changed:
            self.bundle.reload_soon()
        elif old.max_new_tokens != new.max_new_tokens and self.host.engine is not None:
            self.host.engine.max_new_tokens = new.max_new_tokens
        review_fields = ("threshold", "comments", "severity", "exclude", "diff_base")
        if not bundle_changed and any(
            getattr(old, name) != getattr(new, name) for name in (*review_fields, "max_new_tokens")
        ):
            self.reviewer.review_all()

    def close(self) -> None:
        """Stop the model worker and close git's helper processes (any thread). Also run
        when the client goes away without a shutdown."""
        self.shutting_down = True
        self.reviewer.close()
        self.host.stop()
        self.repos.close()

    def status(self) -> dict[str, Any]:
        host, reviewer = self.host, self.reviewer
        info = host.engine.info if host.engine is not None else None
        return {
            "state": host.state.value,
            "bundle": str(host.bundle or self.configuration.bundle_path() or ""),
            "base": self.settings.diff_base,
            "adapters": list(getattr(info, "adapters", ())),
            "device": host.device if info is not None else None,
            "queue": host.queue_length,
            "busy": host.busy,
            "jobsRun": host.jobs_run,
            "generationsInterrupted": host.jobs_interrupted,
            "cacheHits": reviewer.scores.hits + reviewer.comments.hits,
            "cacheMisses": reviewer.scores.misses + reviewer.comments.misses,
            "documents": reviewer.scheduler.open_count,
            "training": self.commands.training_running,
            "pullDiagnostics": self.client.pull_diagnostics,
            "threshold": self.bundle.threshold,
            "message": host.message or self.bundle.unscored or "",
            "version": __version__,
        }


def create_server(
    loader: EngineLoader = load_engine,
    train_command: Sequence[str] = training_job.TRAIN_COMMAND,
) -> HunkwiseServer:
    """A server with every feature registered; ``loader`` and ``train_command`` are the
    real engine and trainer unless a test passes stand-ins."""
    return HunkwiseServer(loader, train_command)
