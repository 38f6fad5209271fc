"""A small LSP client for the benchmarks: pygls' ``LanguageClient`` running the real
language server over stdio, keeping every ``publishDiagnostics`` with its document version
and waiting for them without polling. (The test suite has its own, on pytest-lsp; bench/
does not import tests/.)"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
#: the real server, as editors start it
SERVER = (sys.executable, "-m", "server")

#: What an editor like VS Code says it can do, as far as the benchmarked paths care: pushed
#: diagnostics with versions, markdown hovers, UTF-16 positions; no progress or pulled
#: configuration to answer.
CAPABILITIES = types.ClientCapabilities(
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(version_support=True),
        hover=types.HoverClientCapabilities(
            content_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText]
        ),
    ),
)


@dataclass(frozen=True)
class Published:
    uri: str
    version: int | None
    diagnostics: list[types.Diagnostic]


class BenchClient(LanguageClient):
    """One server's client: ``published`` holds every publication in order."""

    def __init__(self) -> None:
        super().__init__("hunkwise-bench", "1")
        self.published: list[Published] = []
        self._waiters: list[tuple[Callable[[Published], bool], asyncio.Future[Published]]] = []
        self._stderr: asyncio.Task[None] | None = None

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def publish(params: types.PublishDiagnosticsParams) -> None:
            item = Published(params.uri, params.version, list(params.diagnostics))
            self.published.append(item)
            for check, future in list(self._waiters):
                if not future.done() and check(item):
                    future.set_result(item)

        # The server's messages are not what a benchmark measures.
        for method in (types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE):
            self.feature(method)(lambda params: None)

    async def start(self, command: tuple[str, ...], env: dict[str, str] | None = None) -> None:
        await self.start_io(*command, cwd=str(ROOT), env=env)
        self._stderr = asyncio.ensure_future(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        """Read the server's log as it comes: a full stderr pipe would stop the server."""
        stream = self._server.stderr if self._server else None
        while stream is not None and await stream.readline():
            pass

    async def wait_for(
        self, check: Callable[[Published], bool], since: int, timeout: float
    ) -> Published:
        for item in self.published[since:]:
            if check(item):
                return item
        waiter = (check, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        finally:
            self._waiters.remove(waiter)


@contextlib.asynccontextmanager
async def session(
    root: Path, options: dict[str, Any], command: tuple[str, ...] = SERVER
) -> AsyncIterator[BenchClient]:
    """A server started over stdio and initialized on the workspace ``root`` with
    ``options``; shut down and exited on the way out."""
    client = BenchClient()
    await client.start(command)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=options,
        )
    )
    client.initialized(types.InitializedParams())
    try:
        yield client
    finally:
        if client._server is not None and client._server.returncode is None:
            await client.shutdown_async(None)
            client.exit(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client._server.wait(), 30)
        if client._stderr is not None:
            client._stderr.cancel()
        await client.stop()


async def published(
    client: BenchClient, uri: str, version: int | None, since: int = 0, timeout: float = 60.0
) -> Published:
    """The first diagnostics published for ``uri`` at ``version`` after the first ``since``
    publications."""

    def wanted(item: Published) -> bool:
        return item.uri == uri and item.version == version

    try:
        return await client.wait_for(wanted, since, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for diagnostics for {uri} version {version}"
        ) from None


async def status(client: BenchClient) -> dict[str, Any]:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hunkwise.status", arguments=[])
    )
