"""A pytest-lsp client for the language server tests: the server runs as a real process
over stdio; the client records every published diagnostic with its document version and
every ``workspace/applyEdit`` it is sent, and the helpers below wait for them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from bench.lsp_harness import ROOT, SERVER


@dataclass(frozen=True)
class Published:
    uri: str
    version: int | None
    diagnostics: list[types.Diagnostic]


def make_client() -> LanguageClient:
    """pytest-lsp's client, also keeping ``client.published`` (every publishDiagnostics,
    in order) and ``client.edits`` (every applyEdit request, answered "applied")."""
    client = LanguageClient(converter_factory=default_converter)
    client.published: list[Published] = []  # type: ignore[misc]
    client.edits: list[types.ApplyWorkspaceEditParams] = []  # type: ignore[misc]
    client.waiters: list[tuple[Callable[[Published], bool], asyncio.Future]] = []  # type: ignore[misc]

    def publish(client: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        item = Published(params.uri, params.version, list(params.diagnostics))
        client.published.append(item)
        for check, future in list(client.waiters):
            if not future.done() and check(item):
                future.set_result(item)

    def apply_edit(
        client: LanguageClient, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        client.edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    # lsprotocol (2025.0.0) reads any object with a "command" key as a Command, so a
    # CodeAction that carries a command would arrive as a Command; VS Code checks the type.
    converter = client.protocol._converter

    def code_action_or_command(value: Any, _: type) -> types.CodeAction | types.Command:
        if isinstance(value.get("command"), str):
            return converter.structure(value, types.Command)
        return converter.structure(value, types.CodeAction)

    converter.register_structure_hook(
        Union[types.Command, types.CodeAction],  # noqa: UP007  (the exact key lsprotocol uses)
        code_action_or_command,
    )

    features = dict(DEFAULT_CLIENT_FEATURES)
    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = publish
    features[types.WORKSPACE_APPLY_EDIT] = apply_edit
    register_lsp_features(client, features)
    return client


def vscode_capabilities(pull: bool = False) -> types.ClientCapabilities:
    capabilities = client_capabilities("visual-studio-code")
    if pull:
        assert capabilities.text_document is not None and capabilities.workspace is not None
        capabilities.text_document.diagnostic = types.DiagnosticClientCapabilities(
            related_document_support=False
        )
        capabilities.workspace.diagnostics = types.DiagnosticWorkspaceClientCapabilities(
            refresh_support=True
        )
    return capabilities


@contextlib.asynccontextmanager
async def session(
    root: Path,
    options: dict[str, Any] | None = None,
    command: tuple[str, ...] = SERVER,
    capabilities: types.ClientCapabilities | None = None,
    env: dict[str, str] | None = None,
    configuration: dict[str, Any] | None = None,
) -> AsyncIterator[LanguageClient]:
    """A server started over stdio and initialized on the workspace ``root``; shut down
    (and its exit status checked) on the way out."""
    client = make_client()
    if configuration is not None:
        client.set_configuration(configuration, section="hunkwise")
    await client.start_io(*command, cwd=str(ROOT), env=env)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities or vscode_capabilities(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=options or {},
        )
    )
    try:
        yield client
    finally:
        if client._server is not None and client._server.returncode is None:
            await client.shutdown_session()
        await client.stop()


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def published(
    client: LanguageClient,
    uri: str,
    version: int | None,
    since: int = 0,
    check: Callable[[Published], bool] = lambda _: True,
    timeout: float = 60.0,
) -> Published:
    """The first diagnostics published for ``uri`` at ``version`` (after the first
    ``since`` publications) that pass ``check``; waits for them without polling."""

    def wanted(item: Published) -> bool:
        return item.uri == uri and item.version == version and check(item)

    for item in client.published[since:]:
        if wanted(item):
            return item
    waiter = (wanted, asyncio.get_running_loop().create_future())
    client.waiters.append(waiter)
    try:
        return await asyncio.wait_for(waiter[1], timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for diagnostics for {uri} version {version}"
        ) from None
    finally:
        client.waiters.remove(waiter)


async def execute(client: LanguageClient, name: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(arguments))
    )


async def status(client: LanguageClient) -> dict[str, Any]:
    return await execute(client, "hunkwise.status")


def configure(client: LanguageClient, **settings: Any) -> None:
    """Push new settings the way some editors do (in didChangeConfiguration itself)."""
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"hunkwise": settings})
    )
