"""The server's JSON-RPC layer: pygls' ``LanguageServerProtocol`` made to answer every
request exactly once, whatever a client sends. Params that do not deserialize get a
-32602 naming the field (pygls raises in its reader, answers nothing and pops up "Error in
server"), an unusable id or method a -32600, a second ``initialize`` or a request after
``shutdown`` a -32600, a request before ``initialize`` a -32002; a body that is not JSON a
-32700, one that is no message object, a batch (LSP has none), a request for a
notification, a message nested deeper than ``MAX_NESTING`` a -32600; notifications with
bad params are logged once; no error carries a traceback; documents keep LSP's lines.
Strings and ids are read strictly (lsprotocol's converter would turn ``"uri": {}`` into
the string "{}" and pass ``"id": {}`` on for pygls to hash), a change to a document that
is not open is logged and dropped, and so is a response that comes after the server
stopped waiting for it."""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from typing import Any, Union

from cattrs import BaseValidationError, Converter, transform_error
from cattrs.v import format_exception
from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    RPCRequest,
)
from pygls.workspace import Workspace

from server.frames import UnreadableBody
from server.text import LspWorkspace

log = logging.getLogger(__name__)

#: What ``structure_message`` returns for a message it has already answered or dropped.
HANDLED = object()
_SNAKE = re.compile(r"_([a-z])")
#: Bad notifications logged, at most this many distinct ones (a flood stays small).
_LOGGED_AT_MOST = 100
#: Deeper than this a message is refused unread: no LSP message nests so deep, and the
#: converter and the JSON writer recurse once a level (about 400 levels overflow them, so a
#: ``codeAction/resolve`` that echoes its data would go unanswered).
MAX_NESTING = 100
#: LSP's notifications: a message for one that carries an id is refused.
_NOTIFICATIONS = frozenset(
    method for method, kinds in types.METHOD_TO_TYPES.items() if kinds[1] is None
)
#: A JSON-RPC request's members: pygls' fallback message types take no others.
_MEMBERS = ("jsonrpc", "id", "method", "params")
_NO_BATCHES = "batches are not part of LSP: send each message in a frame of its own"


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def nesting(value: Any) -> int:
    """How deep JSON arrays and objects nest in ``value`` (a scalar: 0), without
    recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def _strict_string(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _strict_id(value: Any, _: type) -> int | str:
    if not _valid_id(value):
        raise ValueError("must be an integer or a string")
    return value


def _strict_optional_id(value: Any, _: type) -> int | str | None:
    return None if value is None else _strict_id(value, _)


def read_json_types_strictly(converter: Converter) -> None:
    """Make ``converter`` refuse a value of the wrong JSON type where LSP wants a string,
    or an id or token (an integer or a string), instead of converting it: cattrs reads
    ``{}`` as the string "{}", and lets anything through as an id or token, where pygls
    hashes it."""
    converter.register_structure_hook(str, _strict_string)
    # The exact keys lsprotocol's fields use (request ids, progress tokens, codes).
    converter.register_structure_hook(Union[int, str], _strict_id)  # noqa: UP007
    converter.register_structure_hook(Union[int, str, None], _strict_optional_id)  # noqa: UP007


def _envelope_problem(data: dict[str, Any]) -> str | None:
    """What makes a message with a method no JSON-RPC message the server reads."""
    method = data["method"]
    if data.get("jsonrpc") != "2.0":
        return 'a message must say "jsonrpc": "2.0"'
    if not isinstance(method, str):
        return "the method must be a string"
    if "id" in data and method in _NOTIFICATIONS:
        return f"{method} is a notification: send it without an id"
    if nesting(data) > MAX_NESTING:
        return f"the message nests deeper than {MAX_NESTING} levels"
    return None


def _describe(error: BaseException, type_: Any) -> str:
    text = format_exception(error, type_)
    if type(error) is ValueError and str(error):  # lsprotocol's range checks say which
        text = str(error)
    return text


def params_problem(method: str, error: Exception) -> str:
    """A one-line message naming what is wrong in a message's params, in the protocol's
    camelCase (``invalid params for textDocument/codeAction: context: required field
    missing``)."""
    return f"invalid params for {method}: {_details(error)}"


def _details(error: Exception) -> str:
    if not isinstance(error, BaseValidationError):
        return str(error) or type(error).__name__
    found = []
    for line in transform_error(error, format_exception=_describe):
        what, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$.params.").removeprefix("$.")
        where = _SNAKE.sub(lambda match: match.group(1).upper(), where)
        found.append(f"{where}: {what}" if what else line)
    return "; ".join(found[:5])


class HunkwiseProtocol(LanguageServerProtocol):
    """pygls' protocol with a response for every request (see the module docstring)."""

    def __init__(self, server: Any, converter: Any) -> None:
        self._documents: Workspace | None = None
        read_json_types_strictly(converter)
        super().__init__(server, converter)
        self._initialize_seen = False
        self._logged: set[str] = set()

    # The workspace pygls makes at ``initialize`` is swapped for one whose documents
    # keep LSP's lines (server.text.LspTextDocument) before any document arrives.
    @property
    def _workspace(self) -> Workspace | None:
        return self._documents

    @_workspace.setter
    def _workspace(self, workspace: Workspace | None) -> None:
        if workspace is not None and not isinstance(workspace, LspWorkspace):
            workspace = LspWorkspace.like(workspace, self._server._text_document_sync_kind)
        self._documents = workspace

    # -- reading -----------------------------------------------------------------------

    def structure_message(self, data: Any) -> Any:
        """The message a frame's JSON value ``data`` holds (only the frame's own object is
        one: pygls would read any inner object with "jsonrpc" and "method" keys as a
        message), or HANDLED when it was answered or dropped here."""
        if isinstance(data, list):
            self._refuse_batch(data)
            return HANDLED
        if not isinstance(data, dict):
            self._refuse(None, "a message must be a JSON object")
            return HANDLED
        if "method" not in data:
            return self._structure_response(data)
        method = data["method"]
        is_request = "id" in data
        if is_request and not _valid_id(data["id"]):
            self._refuse(None, "the request id must be a string or an integer")
            return HANDLED
        problem = _envelope_problem(data)
        if problem is not None:
            if is_request:
                self._refuse(data["id"], problem)
            else:
                self._ignore(f"ignoring a notification: {problem}")
            return HANDLED
        message_type = self.get_message_type(method)
        if is_request and not self._handles(method):
            message_type = None  # answered "method not found", whatever its params
        if message_type is None:
            message_type = JsonRPCRequestMessage if is_request else JsonRPCNotification
            # JSON-RPC's params may be left out; members it does not know are ignored
            data = {"params": None, **{key: data[key] for key in _MEMBERS if key in data}}
        try:
            return self._converter.structure(data, message_type)
        except Exception as error:
            problem = params_problem(method, error)
        if is_request:
            log.info("answering request %r with invalid params: %s", data["id"], problem)
            self._send_response(
                data["id"],
                error=types.ResponseError(types.ErrorCodes.InvalidParams, problem),
            )
        else:
            self._ignore(f"ignoring a notification: {problem}")
        return HANDLED

    def _handles(self, method: str) -> bool:
        return method in self.fm.builtin_features or method in self.fm.features

    def _ignore(self, problem: str) -> None:
        """Log a message dropped unanswered, once (a flood logs at most a hundred)."""
        if problem not in self._logged and len(self._logged) < _LOGGED_AT_MOST:
            self._logged.add(problem)
            log.warning("%s", problem)

    def _refuse_batch(self, items: list[Any]) -> None:
        """Each request in a batch refused, as JSON-RPC answers each message of a batch
        (an element that is no message, or an empty batch, with a null id)."""
        if not items:
            self._refuse(None, _NO_BATCHES)
        for item in items:
            if not isinstance(item, dict):
                self._refuse(None, _NO_BATCHES)
            elif "method" in item and "id" in item:
                self._refuse(item["id"] if _valid_id(item["id"]) else None, _NO_BATCHES)
            elif "method" not in item and "id" not in item:
                self._refuse(None, _NO_BATCHES)

    def _structure_response(self, data: dict[str, Any]) -> Any:
        """A client's response to one of the server's requests. One the converter cannot
        read fails the request it answers, so that the handler waiting for it (and the
        client's request that handler serves) gets an answer; one to no request the server
        sent is dropped (pygls looks its id up among all pending requests, the client's
        own included, and would resolve one of those with it)."""
        if "id" not in data:
            self._refuse(None, "a message needs a method (or, as a response, an id)")
            return HANDLED
        msg_id = data["id"]
        if data.get("jsonrpc") != "2.0" or not _valid_id(msg_id):
            self._ignore(f"ignoring a response with id {msg_id!r}: not JSON-RPC 2.0")
            return HANDLED
        if msg_id not in self._result_types:
            self._ignore(f"ignoring a response to {msg_id!r}: the server sent no such request")
            return HANDLED
        result_type = self._result_types.pop(msg_id) or JsonRPCResponseMessage
        response_type = types.ResponseErrorMessage if "error" in data else result_type
        try:
            return self._converter.structure(data, response_type)
        except Exception as error:
            problem = f"the client's response to request {msg_id!r} cannot be read: "
            problem += _details(error)
        log.warning("%s", problem)
        future = self._request_futures.pop(msg_id, None)
        if future is not None and not future.done():
            future.set_exception(JsonRpcInternalError(problem))
        return HANDLED

    def _handle_response(
        self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None
    ) -> None:
        """pygls' reading of a response to one of the server's requests, except that one
        the server no longer waits for (the wait timed out) is dropped: pygls would fail
        setting the cancelled request's result."""
        future = self._request_futures.get(msg_id)
        if future is not None and future.done():
            del self._request_futures[msg_id]
            self._ignore(f"ignoring a response to {msg_id!r}: the server no longer waits for it")
            return
        super()._handle_response(msg_id, result, error)

    def handle_message(self, message: Any) -> None:
        if message is HANDLED:
            return
        if isinstance(message, RPCRequest):
            refusal = self._refusal(message.method)
            if refusal is not None:
                code, text = refusal
                self._send_response(message.id, error=types.ResponseError(code, text))
                return
            if message.method == types.INITIALIZE:
                self._initialize_seen = True
        elif not self._initialize_seen and getattr(message, "method", types.EXIT) != types.EXIT:
            log.info("dropping %s: it came before initialize", message.method)
            return
        super().handle_message(message)

    def _refusal(self, method: str) -> tuple[int, str] | None:
        """Why a well-formed request is refused in the server's current state, if it is."""
        if self._shutdown and method != types.EXIT:
            return types.ErrorCodes.InvalidRequest, f"{method}: the server is shut down"
        if method == types.INITIALIZE and self._initialize_seen:
            return types.ErrorCodes.InvalidRequest, "initialize may be sent only once"
        if method != types.INITIALIZE and not self._initialize_seen:
            return types.ErrorCodes.ServerNotInitialized, f"{method}: initialize first"
        return None

    def _refuse(self, msg_id: Any, text: str) -> None:
        error = types.ResponseError(types.ErrorCodes.InvalidRequest, text)
        if msg_id is None:
            self._send_without_id(error)
        else:
            self._send_response(msg_id, error=error)

    def _send_without_id(self, error: types.ResponseError) -> None:
        """An error for a message whose id is unknown: JSON-RPC wants ``"id": null``,
        which pygls' serializer would leave out."""
        self._send_data(
            {"jsonrpc": self.VERSION, "id": None, "error": self._converter.unstructure(error)}
        )

    def answer_unreadable(self, error: Exception) -> bool:
        """A message that is not JSON gets a -32700 with a null id, as JSON-RPC says;
        whether ``error`` was that."""
        if not isinstance(error, UnreadableBody):
            return False
        self._send_without_id(types.ResponseError(types.ErrorCodes.ParseError, str(error)))
        return True

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        """pygls' ``shutdown``, cancelling the requests still running from a copy of their
        table: a cancelled request's answer takes it out of the table, which pygls
        iterates, so it would answer the shutdown with an internal error."""
        if (user_handler := self.fm.features.get(types.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current_id = self.msg_id
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current_id and not future.done():
                future.cancel()
        self._shutdown = True

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        """pygls' ``didChange``, for open documents only: pygls fails with a KeyError on
        a change to any other."""
        uri = params.text_document.uri
        if not self.workspace.is_open(uri):
            self._ignore(f"ignoring a change to {uri}: it is not open")
            return
        yield from super().lsp_text_document__did_change(params)

    # -- writing -----------------------------------------------------------------------

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        error = None if future.cancelled() else future.exception()
        if isinstance(error, JsonRpcInvalidParams):
            # A refusal with its reason (a bad command argument): no traceback in the log.
            self._request_futures.pop(msg_id, None)
            log.info("refused request %r: %s", msg_id, error.message)
            self._send_response(msg_id, error=error.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)

    def _send_response(
        self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None
    ) -> None:
        if error is not None and error.data is not None:
            # pygls puts the server's traceback (its file paths) in internal errors' data;
            # its log has it, the client gets the message only.
            error = types.ResponseError(error.code, error.message.strip())
        super()._send_response(msg_id, result, error)
