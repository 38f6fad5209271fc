"""How a unit of the server declares its LSP handlers beside their code: methods marked
``@feature(method)`` or ``@command(name)``, registered on a pygls server by
:func:`register` when the server is assembled (server.server.create_server)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pygls.lsp.server import LanguageServer

_MARK = "_hunkwise_handler"

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Declared:
    kind: str  # "feature" or "command"
    name: str
    options: Any = None


def feature(method: str, options: Any = None) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of an LSP request or notification (with its
    registration ``options``, as pygls' ``LanguageServer.feature`` takes them)."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _MARK, _Declared("feature", method, options))
        return handler

    return mark


def command(name: str) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of a ``workspace/executeCommand`` command; it receives
    the command's arguments as ``*args``."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _MARK, _Declared("command", name))
        return handler

    return mark


def handlers(unit: object) -> list[tuple[_Declared, Callable[..., Any]]]:
    """The marked methods of ``unit``, bound, in the order its class defines them."""
    found: dict[str, tuple[_Declared, Callable[..., Any]]] = {}
    for cls in reversed(type(unit).__mro__):
        for name, member in vars(cls).items():
            declared = getattr(member, _MARK, None)
            if isinstance(declared, _Declared):
                found[name] = (declared, getattr(unit, name))
    return list(found.values())


def _plain(method: Callable[..., Any]) -> Callable[..., Any]:
    """A function calling the bound ``method``: pygls writes attributes on its handlers,
    which a bound method does not take. Its signature is a bare ``*args``, so pygls never
    mistakes the first parameter for the server (it passes the server to a handler whose
    first parameter is named ``ls`` or annotated with a type the server is an instance of,
    ``object`` included) and passes a command's arguments through unconverted."""
    if inspect.iscoroutinefunction(method):

        async def handler(*args: Any) -> Any:
            return await method(*args)

    else:

        def handler(*args: Any) -> Any:
            return method(*args)

    handler.__name__ = method.__name__
    handler.__qualname__ = method.__qualname__
    handler.__doc__ = method.__doc__
    return handler


def register(ls: LanguageServer, *units: object) -> list[str]:
    """Register every marked handler of ``units`` on ``ls``; returns the command names in
    registration order. pygls calls a bound method with the params only (its first
    parameter is not ``ls``)."""
    commands: list[str] = []
    for unit in units:
        for declared, method in handlers(unit):
            handler = _plain(method)
            if declared.kind == "command":
                ls.command(declared.name)(handler)
                commands.append(declared.name)
            elif declared.options is None:
                ls.feature(declared.name)(handler)
            else:
                ls.feature(declared.name, declared.options)(handler)
    return commands
