"""The server's JSON-RPC layer: pygls' ``LanguageServerProtocol`` made to answer every
request exactly once, whatever a client sends. Params that do not deserialize get a
-32602 naming the field (pygls raises in its reader, answers nothing and pops up "Error in
server"), an unusable id or method a -32600, a second ``initialize`` or a request after
``shutdown`` a -32600, a request before ``initialize`` a -32002; notifications with bad
params are logged once; no error carries a traceback; documents keep LSP's lines."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from cattrs import BaseValidationError, transform_error
from cattrs.v import format_exception
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, RPCRequest
from pygls.workspace import Workspace

from server.text import LspWorkspace

log = logging.getLogger(__name__)

#: What ``structure_message`` returns for a message it has already answered or dropped.
HANDLED = object()
_SNAKE = re.compile(r"_([a-z])")
#: Bad notifications logged, at most this many distinct ones (a flood stays small).
_LOGGED_AT_MOST = 100


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _describe(error: BaseException, type_: Any) -> str:
    text = format_exception(error, type_)
    if type(error) is ValueError and str(error):  # lsprotocol's range checks say which
        text = str(error)
    return text


def params_problem(method: str, error: Exception) -> str:
    """A one-line message naming what is wrong in a message's params, in the protocol's
    camelCase (``invalid params for textDocument/codeAction: context: required field
    missing``)."""
    if isinstance(error, BaseValidationError):
        found = []
        for line in transform_error(error, format_exception=_describe):
            what, _, where = line.rpartition(" @ ")
            where = where.removeprefix("$.params.").removeprefix("$.")
            where = _SNAKE.sub(lambda match: match.group(1).upper(), where)
            found.append(f"{where}: {what}" if what else line)
        details = "; ".join(found[:5])
    else:
        details = str(error) or type(error).__name__
    return f"invalid params for {method}: {details}"


class HunkwiseProtocol(LanguageServerProtocol):
    """pygls' protocol with a response for every request (see the module docstring)."""

    def __init__(self, server: Any, converter: Any) -> None:
        self._documents: Workspace | None = None
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

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" not in data or "method" not in data:
            return super().structure_message(data)  # an inner object, or a response
        method = data["method"]
        is_request = "id" in data
        if is_request and not _valid_id(data["id"]):
            self._refuse(None, "the request id must be a string or an integer")
            return HANDLED
        if not isinstance(method, str):
            if is_request:
                self._refuse(data["id"], "the method must be a string")
            return HANDLED
        fallback = JsonRPCRequestMessage if is_request else JsonRPCNotification
        try:
            return self._converter.structure(data, self.get_message_type(method) or fallback)
        except Exception as error:
            problem = params_problem(method, error)
        if is_request:
            log.info("answering request %r with invalid params: %s", data["id"], problem)
            self._send_response(
                data["id"],
                error=types.ResponseError(types.ErrorCodes.InvalidParams, problem),
            )
        elif problem not in self._logged and len(self._logged) < _LOGGED_AT_MOST:
            self._logged.add(problem)
            log.warning("ignoring a notification: %s", problem)
        return HANDLED

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
        if not isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            return False
        self._send_without_id(
            types.ResponseError(types.ErrorCodes.ParseError, f"the message is not JSON: {error}")
        )
        return True

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
