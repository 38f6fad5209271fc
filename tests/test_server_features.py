"""server.features without a process: a unit's marked methods become the pygls server's
handlers, with their options, called with the params only; and the assembled server
registers every command of the contract, each once."""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from server.features import command, feature, handlers, register
from server.server import COMMANDS, create_server


class Unit:
    def __init__(self) -> None:
        self.seen: list[object] = []

    @feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(self, params: types.DidSaveTextDocumentParams) -> None:
        self.seen.append(params)

    @feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(self, params: types.HoverParams) -> str:
        return f"hover {params.position.line}"

    @command("unit.echo")
    def echo(self, *args: object) -> list[object]:
        return list(args)

    def not_a_handler(self) -> None:  # unmarked: never registered
        raise AssertionError


def test_marked_methods_are_found_in_definition_order() -> None:
    unit = Unit()
    assert [declared.name for declared, _ in handlers(unit)] == [
        types.TEXT_DOCUMENT_DID_SAVE,
        types.TEXT_DOCUMENT_HOVER,
        "unit.echo",
    ]


def test_register_makes_them_handlers_called_with_the_params_only() -> None:
    ls = LanguageServer("unit", "1")
    unit = Unit()
    assert register(ls, unit) == ["unit.echo"]
    manager = ls.protocol.fm
    assert manager.feature_options[types.TEXT_DOCUMENT_DID_SAVE] == types.SaveOptions(
        include_text=False
    )
    save = types.DidSaveTextDocumentParams(types.TextDocumentIdentifier("file:///a.py"))
    manager.features[types.TEXT_DOCUMENT_DID_SAVE](save)
    assert unit.seen == [save]
    hover = types.HoverParams(types.TextDocumentIdentifier("file:///a.py"), types.Position(3, 0))
    assert asyncio.run(manager.features[types.TEXT_DOCUMENT_HOVER](hover)) == "hover 3"
    assert manager.commands["unit.echo"](1, "two") == [1, "two"]


def test_the_server_registers_every_command_of_the_contract() -> None:
    server = create_server()
    assert sorted(server.protocol.fm.commands) == sorted(COMMANDS)
    options = server.protocol.fm.feature_options
    assert options[types.TEXT_DOCUMENT_DIAGNOSTIC].identifier == "hunkwise"
    assert options[types.TEXT_DOCUMENT_CODE_ACTION].resolve_provider is True
    server.close()
