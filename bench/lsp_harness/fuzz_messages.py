"""Random bad LSP traffic for tests/test_server_fuzz.py and bench/lsp_fuzz.py: a seeded
generator of well-framed messages (every method the server registers, with mutated
params, bad ids, batches, bodies that are not JSON), what JSON-RPC says each must get
back, frames that must end the server, and a runner that sends them to the real server
over stdio and counts what came back."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from bench.lsp_harness import ROOT, SERVER, STAND_IN_SERVER
from bench.lsp_harness.raw_client import RawClient
from bench.lsp_harness.stand_in_engine import write_stand_in_bundle
from server.frames import MAX_CONTENT_LENGTH
from server.protocol import MAX_NESTING, nesting
from server.server import COMMANDS

#: Nested values the generator makes: shallow, refused as nested deeper than MAX_NESTING
#: (100), too deep for any JSON reader (Python's stops near 1,000 levels); each well clear
#: of the limits, so that the server and this module agree on which side a message is.
SHALLOW, DEEP, UNREADABLE = (2, 40), (150, 400), (3_000, 6_000)
#: Request methods the server answers (server.server.create_server registers them; the
#: fuzz test checks this list against it).
REQUESTS = frozenset(
    {
        types.INITIALIZE,
        types.SHUTDOWN,
        types.TEXT_DOCUMENT_HOVER,
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CODE_ACTION_RESOLVE,
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.WORKSPACE_EXECUTE_COMMAND,
    }
)
#: Every LSP notification: a request (a message with an id) for one is refused.
NOTIFICATIONS = frozenset(
    method for method, kinds in types.METHOD_TO_TYPES.items() if kinds[1] is None
)
#: What a request for a method the server has may get: a result (None), a refusal of its
#: params, or a cancellation by a ``$/cancelRequest`` sent after it.
ANSWERED = frozenset({None, -32602, -32800})
INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR = -32600, -32601, -32700

APP = "".join(f"def handler_{n}(request):\n    return request.get({n})\n\n" for n in range(1, 9))
#: The edit whose one hunk the stand-in engine flags (it adds a ``print(``).
APP_WITH_PRINT = APP.replace("def handler_4", "print('debug')\ndef handler_4")


# -- what a message must get back --------------------------------------------------------


def _usable_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def id_key(value: Any) -> str:
    """A response's id as a dictionary key (1 and "1" differ)."""
    return json.dumps(value)


@dataclass(frozen=True)
class Expected:
    """What one message must get back: for each usable request id the outcomes allowed
    (None: a result, else an error code), and the codes of the answers with a null id."""

    answers: tuple[tuple[str, frozenset[int | None]], ...] = ()
    nulls: tuple[int, ...] = ()


def _request_outcomes(message: dict[str, Any]) -> frozenset[int | None]:
    method = message["method"]
    if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return frozenset({INVALID_REQUEST})
    if nesting(message) > MAX_NESTING or method in NOTIFICATIONS:
        return frozenset({INVALID_REQUEST})
    if method == types.INITIALIZE:  # the second one
        return frozenset({INVALID_REQUEST, -32602})
    if method in REQUESTS:
        return ANSWERED
    return frozenset({METHOD_NOT_FOUND})


def expected(body: bytes) -> Expected:
    """JSON-RPC's rules as server.protocol applies them, for one frame's body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or too deep to read
        return Expected(nulls=(PARSE_ERROR,))
    if isinstance(data, list):  # a batch: LSP has none, each request in it is refused
        if not data:
            return Expected(nulls=(INVALID_REQUEST,))
        answers, nulls = [], []
        for item in data:
            if not isinstance(item, dict):
                nulls.append(INVALID_REQUEST)
            elif "method" in item and "id" in item:
                if _usable_id(item["id"]):
                    answers.append((id_key(item["id"]), frozenset({INVALID_REQUEST})))
                else:
                    nulls.append(INVALID_REQUEST)
            elif "method" not in item and "id" not in item:
                nulls.append(INVALID_REQUEST)
        return Expected(tuple(answers), tuple(nulls))
    if not isinstance(data, dict):
        return Expected(nulls=(INVALID_REQUEST,))
    if "method" not in data:  # a response to the server (nothing back), or no message
        return Expected() if "id" in data else Expected(nulls=(INVALID_REQUEST,))
    if "id" not in data:
        return Expected()  # a notification
    if not _usable_id(data["id"]):
        return Expected(nulls=(INVALID_REQUEST,))
    return Expected(answers=((id_key(data["id"]), _request_outcomes(data)),))


# -- the generator -----------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """What the messages aim at: the workspace's repository and its file, the stand-in
    bundle, the ids of real findings, and a scratch directory (every path the generator
    makes lies inside it, so nothing the server does can reach outside)."""

    root: Path
    uri: str
    bundle: Path
    scratch: Path
    hunks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Frame:
    """One message as sent: its header block and body, and what kind of message it is."""

    kind: str
    body: bytes
    header: bytes

    @property
    def data(self) -> bytes:
        return self.header + self.body


@dataclass(frozen=True)
class FrameBreak:
    """Bytes that break LSP's framing: the server must stop with ``reason`` in its log."""

    kind: str
    data: bytes
    reason: str
    end_input: bool = False  # close stdin after the bytes


_ODD_TEXT = (
    "",
    " ",
    "\udc80",
    "\ud800",
    "a\udc80b\ud83d",
    "\x00",
    "a\x00b",
    "😀",
    "𝕏𝕐",
    "\u202eevil",
    "漢字",
    "\r\n",
    "\r",
    "\u2028\u2029",
    "\f\v\x1c\x85",
    "%00",
    "\\",
    '"',
    "{}",
    "null",
    "file:",
    "untitled:Untitled-1",
    "hunkwise.status",
    "INDEX",
    "HEAD~99999",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "print('debug')",
    "OOM!",
)
_NUMBERS = (
    -1,
    0,
    1,
    7,
    -(2**31),
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63,
    -(2**63),
    10**30,
    1.5,
    -0.5,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
)
#: A key the mutator leaves alone: where ``hunkwise.trainFromRepo`` writes a bundle.
_KEPT = frozenset({"bundle"})


class MessageGenerator:
    """Seeded random LSP traffic aimed at ``targets``; the same seed and targets give the
    same frames."""

    def __init__(self, seed: int, targets: Targets) -> None:
        self.rng = random.Random(seed)
        self.targets = targets
        self.next_id = 0
        self.sent_ids: list[Any] = []
        self.version = 10
        outside = targets.scratch / "outside.py"
        self.uris = (
            targets.uri,
            targets.uri,
            targets.uri,
            "untitled:Untitled-1",
            outside.as_uri(),
            (targets.scratch / "nowhere" / "x.py").as_uri(),
            (targets.root / "new.py").as_uri(),
        )

    # -- values --------------------------------------------------------------------------

    def odd_text(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.01:  # up to 3.6 MB of JSON ("😀" is 12 bytes as escapes)
            return rng.choice(("x", "😀", "\udc80", "\x00")) * 300_000
        if roll < 0.06:
            return rng.choice(("x", "😀", "\udc80", "é\n")) * rng.choice((1_000, 30_000))
        if roll < 0.2:
            return "".join(rng.choice(_ODD_TEXT) for _ in range(rng.randint(2, 6)))
        return rng.choice(_ODD_TEXT)

    def nested(self, depths: tuple[int, int]) -> Any:
        value: Any = self.rng.choice((1, "x", None, True))
        for _ in range(self.rng.randint(*depths)):
            value = [value] if self.rng.random() < 0.5 else {"k": value}
        return value

    def garbage(self, shallow: bool = False) -> Any:
        rng = self.rng
        roll = rng.randrange(12 if shallow else 14)
        if roll < 3:
            return self.odd_text()
        if roll < 6:
            return rng.choice(_NUMBERS)
        if roll < 7:
            return rng.choice((True, False))
        if roll < 8:
            return None
        if roll < 10:
            return [self.garbage(shallow=True) for _ in range(rng.randint(0, 3))]
        if roll < 12:
            return {
                self.odd_text()[:20]: self.garbage(shallow=True) for _ in range(rng.randint(0, 3))
            }
        if roll < 13:
            # an inner object that looks like a message: only the frame's own is one
            return {"jsonrpc": "2.0", "id": self.bad_id(), "method": "textDocument/hover"}
        return self.nested(DEEP if rng.random() < 0.5 else SHALLOW)

    def mutate(self, value: Any, depth: int = 0) -> Any:
        """``value`` with one random change somewhere in it (a copy)."""
        rng = self.rng
        if depth > 6 or rng.random() < 0.25:
            return self.garbage()
        if isinstance(value, dict) and value:
            key = rng.choice(sorted(value, key=str))
            roll = rng.random()
            changed = dict(value)
            if key in _KEPT:
                return changed
            if roll < 0.3:
                del changed[key]
            elif roll < 0.4:
                changed[self.odd_text()[:30]] = self.garbage()
            else:
                changed[key] = self.mutate(value[key], depth + 1)
            return changed
        if isinstance(value, list) and value:
            changed = list(value)
            index = rng.randrange(len(changed))
            roll = rng.random()
            if roll < 0.2:
                changed.append(self.garbage())
            elif roll < 0.3:
                changed = []
            else:
                changed[index] = self.mutate(changed[index], depth + 1)
            return changed
        return self.garbage()

    # -- valid params --------------------------------------------------------------------

    def uri(self) -> str:
        return self.rng.choice(self.uris)

    def hunk(self) -> str:
        pool = (*self.targets.hunks, "0123456789abcdef", "")
        return self.rng.choice(pool)

    def position(self) -> dict[str, int]:
        return {"line": self.rng.randint(0, 30), "character": self.rng.randint(0, 40)}

    def range(self) -> dict[str, Any]:
        start, end = sorted(
            (self.position(), self.position()), key=lambda p: (p["line"], p["character"])
        )
        return {"start": start, "end": end}

    def text(self) -> str:
        roll = self.rng.random()
        if roll < 0.4:
            return APP_WITH_PRINT
        if roll < 0.6:
            return APP
        if roll < 0.8:
            return APP + self.odd_text() + "\nprint(1)\n"
        return self.odd_text()

    def change(self) -> dict[str, Any]:
        if self.rng.random() < 0.4:
            return {"text": self.text()}
        return {"range": self.range(), "text": self.rng.choice(("", "x", "print(2)\n", "\r\n"))}

    def settings(self) -> dict[str, Any]:
        rng = self.rng
        values = {
            "bundle": str(self.targets.bundle),
            "threshold": rng.choice((0.0, 0.5, 1.0)),
            "comments": rng.choice((True, False)),
            "severity": rng.choice(("warning", "hint", "error", "information")),
            "exclude": rng.choice(([], ["*.md"], ["app.py"])),
            "diffBase": rng.choice(("HEAD", "INDEX")),
            "debounceMs": rng.choice((0, 50)),
            "maxNewTokens": rng.choice((1, 64)),
            "maxInstructionChars": rng.choice((10, 2000)),
            "device": "cpu",
        }
        chosen = rng.sample(sorted(values), rng.randint(0, len(values)))
        return {"hunkwise": {key: values[key] for key in chosen}}

    def command_arguments(self, command: str) -> list[Any]:
        uri, rng = self.uri(), self.rng
        if command == "hunkwise.editWithInstruction":
            instruction = rng.choice(("Shout.", "", "x" * 3000, self.odd_text()))
            return [{"uri": uri, "range": self.range(), "instruction": instruction}]
        if command in ("hunkwise.applyRefinement", "hunkwise.dismiss"):
            return [{"uri": uri, "hunk": self.hunk()}]
        if command == "hunkwise.trainFromRepo":
            return [{"base": "tiny", "tasks": rng.choice((["rnp"], [], "rnp,rcg"))}]
        return []

    def params(self, method: str) -> Any:
        rng, document = self.rng, {"uri": self.uri()}
        if method == types.TEXT_DOCUMENT_HOVER:
            return {"textDocument": document, "position": self.position()}
        if method == types.TEXT_DOCUMENT_CODE_ACTION:
            diagnostic = {
                "range": self.range(),
                "message": "may need review",
                "source": "hunkwise",
                "code": "review-needed",
                "data": {"hunk": self.hunk(), "p": 0.9},
            }
            context: dict[str, Any] = {"diagnostics": rng.choice(([], [diagnostic]))}
            if rng.random() < 0.3:
                context["only"] = [rng.choice(("quickfix", "refactor.rewrite", "refactor"))]
            return {"textDocument": document, "range": self.range(), "context": context}
        if method == types.CODE_ACTION_RESOLVE:
            data = {"uri": document["uri"], "hunk": self.hunk(), "version": rng.randint(0, 12)}
            return {"title": "Apply suggested refinement", "kind": "quickfix", "data": data}
        if method == types.TEXT_DOCUMENT_DIAGNOSTIC:
            return {"textDocument": document, "previousResultId": rng.choice((None, "0", "x"))}
        if method == types.WORKSPACE_EXECUTE_COMMAND:
            command = rng.choice((*COMMANDS, *COMMANDS, "hunkwise.noSuch", ""))
            return {"command": command, "arguments": self.command_arguments(command)}
        if method == types.INITIALIZE:
            return {"processId": None, "rootUri": self.targets.root.as_uri(), "capabilities": {}}
        if method == types.TEXT_DOCUMENT_DID_OPEN:
            self.version += 1
            item = {"languageId": "python", "version": self.version, "text": self.text()}
            return {"textDocument": {**document, **item}}
        if method == types.TEXT_DOCUMENT_DID_CHANGE:
            self.version += rng.choice((1, 1, 1, 0, -5))
            changes = [self.change() for _ in range(rng.randint(0, 3))]
            return {
                "textDocument": {**document, "version": self.version},
                "contentChanges": changes,
            }
        if method in (types.TEXT_DOCUMENT_DID_SAVE, types.TEXT_DOCUMENT_DID_CLOSE):
            return {"textDocument": document}
        if method == types.WORKSPACE_DID_CHANGE_CONFIGURATION:
            return {"settings": rng.choice((self.settings(), None, {}))}
        if method == types.CANCEL_REQUEST:
            return {"id": rng.choice(self.sent_ids) if self.sent_ids else 0}
        if method == types.SET_TRACE:
            return {"value": rng.choice(("off", "messages", "verbose"))}
        if method == types.WINDOW_WORK_DONE_PROGRESS_CANCEL:
            return {"token": "hunkwise-0123456789ab"}
        if method == types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS:
            folder = {"uri": (self.targets.scratch / "folder").as_uri(), "name": "folder"}
            mine = {"uri": self.targets.root.as_uri(), "name": "repo"}
            added, removed = rng.choice((([folder], []), ([], [folder]), ([mine], [])))
            return {"event": {"added": added, "removed": removed}}
        if method == types.INITIALIZED:
            return {}
        return rng.choice(({}, None, [], self.garbage()))

    # -- messages ------------------------------------------------------------------------

    def request_id(self) -> Any:
        """A fresh usable id (int or string), at times one already used."""
        rng = self.rng
        if self.sent_ids and rng.random() < 0.05:
            return rng.choice(self.sent_ids)  # a duplicate
        self.next_id += 1
        roll = rng.random()
        if roll < 0.5:
            value: Any = self.next_id
        elif roll < 0.6:
            value = -self.next_id
        elif roll < 0.65:
            value = 2**70 + self.next_id
        elif roll < 0.9:
            value = f"fuzz-{self.next_id}"
        else:
            value = f"fuzz-{self.next_id}-{rng.choice(_ODD_TEXT)}"
        self.sent_ids.append(value)
        return value

    def bad_id(self) -> Any:
        return self.rng.choice(({}, {"id": 1}, [], [1], 1.5, 2.0, None, True, False, math.nan))

    _REQUEST_METHODS = (
        types.TEXT_DOCUMENT_HOVER,
        types.TEXT_DOCUMENT_HOVER,
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CODE_ACTION_RESOLVE,
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.WORKSPACE_EXECUTE_COMMAND,
        types.WORKSPACE_EXECUTE_COMMAND,
        types.WORKSPACE_EXECUTE_COMMAND,
        types.INITIALIZE,
    )
    _NOTIFICATION_METHODS = (
        types.TEXT_DOCUMENT_DID_OPEN,
        types.TEXT_DOCUMENT_DID_CHANGE,
        types.TEXT_DOCUMENT_DID_CHANGE,
        types.TEXT_DOCUMENT_DID_SAVE,
        types.TEXT_DOCUMENT_DID_CLOSE,
        types.WORKSPACE_DID_CHANGE_CONFIGURATION,
        types.CANCEL_REQUEST,
        types.SET_TRACE,
        types.WINDOW_WORK_DONE_PROGRESS_CANCEL,
        types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS,
        types.INITIALIZED,
    )
    _UNKNOWN_METHODS = (
        "textDocument/completion",
        "textDocument/definition",
        "workspace/symbol",
        "hunkwise/noSuchMethod",
        "$/noSuchMethod",
        "$/progress",
        "",
        "textDocument/hover ",
        "TEXTDOCUMENT/HOVER",
        "\udc80",
        "x" * 5_000,
    )

    def message(self) -> tuple[str, Any]:
        """One message as a JSON value, and its kind."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            kind, method, is_request = "request", rng.choice(self._REQUEST_METHODS), True
        elif roll < 0.65:
            kind, method, is_request = "notification", rng.choice(self._NOTIFICATION_METHODS), False
        elif roll < 0.72:
            kind, method, is_request = "unknown method", rng.choice(self._UNKNOWN_METHODS), True
        elif roll < 0.76:
            kind, method = "unknown notification", rng.choice(self._UNKNOWN_METHODS)
            is_request = False
        elif roll < 0.80:
            kind, is_request = "request to a notification", True
            method = rng.choice(self._NOTIFICATION_METHODS)
        elif roll < 0.86:
            return "response", self.response()
        else:
            kind, method, is_request = "bad id", rng.choice(self._REQUEST_METHODS), True
        params = self.params(method)
        clean = rng.random() < 0.25
        for _ in range(0 if clean else rng.randint(1, 3)):
            arguments = params.get("arguments") if isinstance(params, dict) else None
            if isinstance(arguments, list) and arguments and rng.random() < 0.5:
                # The commands read their argument object by hand: aim there more often.
                params = {**params, "arguments": [self.mutate(arguments[0]), *arguments[1:]]}
            else:
                params = self.mutate(params)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if is_request:
            message["id"] = self.bad_id() if kind == "bad id" else self.request_id()
        if rng.random() < 0.9:
            message["params"] = params
        if rng.random() < 0.06:
            kind += ", bad envelope"
            self.break_envelope(message)
        return kind if clean or kind != "request" else "mutated request", message

    def break_envelope(self, message: dict[str, Any]) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            message["jsonrpc"] = rng.choice(("1.0", 2, 2.0, None, "2.0 "))
        elif roll < 0.45:
            del message["jsonrpc"]
        elif roll < 0.65:
            message["method"] = rng.choice((5, None, ["textDocument/hover"], {"m": 1}))
        elif roll < 0.8:
            message["result"] = self.garbage(shallow=True)
        else:
            message[self.odd_text()[:20]] = self.garbage(shallow=True)

    def response(self) -> dict[str, Any]:
        """A response to a request the server never sent, at times malformed."""
        self.next_id += 1
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": f"no-such-request-{self.next_id}"}
        roll = self.rng.random()
        if roll < 0.4:
            answer["result"] = self.garbage(shallow=True)
        elif roll < 0.8:
            answer["error"] = self.rng.choice(
                ({"code": -32603, "message": "x"}, {"code": "x"}, None, self.garbage())
            )
        else:
            answer["id"] = self.bad_id()
        return answer

    def body(self) -> tuple[str, bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return "batch", self.encode([self.message()[1] for _ in range(rng.randint(0, 4))])
        if roll < 0.07:
            items = [rng.choice((1, "x", None, [], {"jsonrpc": "2.0"})) for _ in range(3)]
            return "garbage batch", self.encode(items)
        if roll < 0.09:
            return "not an object", self.encode(rng.choice((5, "x", None, True, 1.5)))
        if roll < 0.13:
            return "not JSON", self.not_json()
        if roll < 0.14:
            depth = rng.randint(*UNREADABLE)
            return "too deep to read", (
                b'{"jsonrpc":"2.0","id":%d,"method":"textDocument/hover","params":%s%s}'
                % (self.request_id_int(), b"[" * depth, b"]" * depth)
            )
        if roll < 0.15:
            digits = b"9" * rng.choice((5_000, 50_000))
            return "huge number", (
                b'{"jsonrpc":"2.0","id":%d,"method":"textDocument/hover","params":{"position":%s}}'
                % (self.request_id_int(), digits)
            )
        kind, message = self.message()
        return kind, self.encode(message)

    def request_id_int(self) -> int:
        self.next_id += 1
        return self.next_id

    def not_json(self) -> bytes:
        rng = self.rng
        valid = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "textDocument/hover"}).encode()
        return rng.choice(
            (
                b"",
                b"{",
                b"{not json",
                valid[: rng.randint(1, len(valid) - 1)],
                valid + b" trailing",
                b"\xff\xfe\x00",
                b'{"jsonrpc": "2.0", "id": 1, "method": "x\xc3"}',
                rng.randbytes(rng.randint(1, 200)),
                b"'single quotes'",
                b'{"a": 1,}',
            )
        )

    def encode(self, value: Any) -> bytes:
        if self.rng.random() < 0.5:
            try:
                return json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: only its \u escape is JSON
                pass
        return json.dumps(value).encode("ascii")

    def header(self, body: bytes) -> bytes:
        """A well-formed header block for ``body``, in one of the shapes LSP allows."""
        rng = self.rng
        name = rng.choice((b"Content-Length", b"content-length", b"CONTENT-LENGTH"))
        lines = [name + rng.choice((b": ", b":", b":   ")) + b"%d" % len(body)]
        if rng.random() < 0.2:
            lines.append(b"Content-Type: application/vscode-jsonrpc; charset=utf-8")
        if rng.random() < 0.1:
            value = self.odd_text()[:40].replace("\r", "").replace("\n", "")
            lines.insert(0, b"X-Fuzz: " + value.encode("utf-8", "replace"))
        end = rng.choice((b"\r\n", b"\r\n", b"\n"))
        lead = b"\r\n" if rng.random() < 0.05 else b""  # a stray line break between frames
        return lead + b"".join(line + end for line in lines) + end

    def frame(self) -> Frame:
        kind, body = self.body()
        while len(body) > MAX_CONTENT_LENGTH:  # a longer one is a frame break, not a message
            kind, body = self.body()
        return Frame(kind, body, self.header(body))


FRAME_BREAKS = (
    "huge length",
    "length not a number",
    "no length",
    "no colon",
    "endless line",
    "too many headers",
    "ends in headers",
    "ends in body",
)


def frame_break(kind: str, rng: random.Random) -> FrameBreak:
    """Bytes of one of the ``FRAME_BREAKS`` kinds, after which the server can trust
    nothing more of the stream."""
    if kind == "huge length":
        length = rng.choice((16 * 2**20 + 1, 2**31, 10**19))
        return FrameBreak(kind, b"Content-Length: %d\r\n\r\n{}" % length, "over the server's limit")
    if kind == "length not a number":
        value = rng.choice((b"ten", b"-1", b"1e3", b"", b"0x10", b"9" * 25))
        return FrameBreak(kind, b"Content-Length: %s\r\n\r\n{}" % value, "not a number")
    if kind == "no length":
        return FrameBreak(kind, b"Content-Type: text/plain\r\n\r\n{}", "without a Content-Length")
    if kind == "no colon":
        line = rng.choice((b"Garbage header", b"{}", b"Content-Length 2"))
        return FrameBreak(kind, line + b"\r\n\r\n{}", "without a colon")
    if kind == "endless line":
        data = b"Content-Length: 2" + b"0" * rng.randint(1_100, 100_000)
        return FrameBreak(kind, data, "longer than")
    if kind == "too many headers":
        return FrameBreak(kind, b"X-a: b\r\n" * rng.randint(17, 200), "more than 16 header lines")
    if kind == "ends in headers":
        return FrameBreak(kind, b"Content-Length: 10\r\n", "inside a frame's headers", True)
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}'
    cut = rng.randint(0, len(body) - 1)
    return FrameBreak(
        kind, b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:cut]), "body bytes", True
    )


# -- running it --------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """Counts of one fuzz run, and every rule broken (empty when the server kept them)."""

    seed: int
    messages: int = 0
    requests: int = 0
    refusals_without_id: int = 0
    responses: int = 0
    null_id_responses: int = 0
    unanswered: int = 0
    duplicate_responses: int = 0
    wrong_codes: int = 0
    internal_errors: int = 0
    leaks: int = 0
    popups: int = 0
    logged_errors: int = 0
    crashes: int = 0
    frame_breaks: int = 0
    clean_exits: int = 0
    log_tracebacks: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text[:600])


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def fuzz_env(scratch: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(scratch / "cache"), "HF_HUB_OFFLINE": "1"}


def client_replies(message: dict[str, Any]) -> dict[str, Any]:
    """The fuzz client's answers to the server's requests: edits are never applied."""
    if message["method"] == types.WORKSPACE_APPLY_EDIT:
        result: Any = {"applied": False, "failureReason": "the fuzz client applies nothing"}
    else:
        result = None
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def make_workspace(scratch: Path) -> Targets:
    """A git repository with one committed file, and a stand-in bundle, in ``scratch``."""
    import git

    root = scratch / "repo"
    repo = git.Repo.init(root)
    (root / "app.py").write_text(APP, encoding="utf-8")
    repo.index.add(["app.py"])
    author = git.Actor("Fuzz Author", "fuzz@example.com")
    repo.index.commit("Add handlers", author=author, committer=author)
    (scratch / "outside.py").write_text("secret = 1\n")
    bundle = write_stand_in_bundle(scratch / "bundle")
    return Targets(root, (root / "app.py").as_uri(), bundle, scratch)


def _findings(client: RawClient, uri: str, timeout: float = 60.0) -> tuple[str, ...]:
    """The hunk ids of the first diagnostics published for ``uri`` with a finding."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in client.collect(0.1):
            params = message.get("params") or {}
            if message.get("method") == "textDocument/publishDiagnostics" and (
                params.get("uri") == uri and params.get("diagnostics")
            ):
                return tuple(sorted(d["data"]["hunk"] for d in params["diagnostics"]))
    raise AssertionError(f"no findings published for {uri}")


#: What no answer may show: the server's source paths or a traceback.
_LEAK = re.compile(re.escape(str(ROOT)) + "|site-packages|Traceback")


def _check_messages(report: FuzzReport, messages: list[dict[str, Any]]) -> None:
    """What holds for everything the server sent: no traceback or source path in any
    answer, no "Error in server" popup."""
    for message in messages:
        if "method" not in message:
            error = message.get("error")
            if error is not None and ("data" in error or _LEAK.search(json.dumps(error))):
                report.leaks += 1
                report.problem(f"an error with a traceback or path: {_short(message)}")
            if error is not None and error.get("code") == -32603:
                report.internal_errors += 1
                report.problem(f"an internal error: {_short(message)}")
        elif "Traceback" in json.dumps(message.get("params")):
            report.leaks += 1
            report.problem(f"a traceback sent to the client: {_short(message)}")
        if message.get("method") == "window/logMessage" and "internal error" in json.dumps(
            message["params"]
        ):
            report.logged_errors += 1  # a notification's handler failed (see the log)
            report.problem(f"an internal error logged to the client: {_short(message)}")
        if message.get("method") == "window/showMessage" and "Error in server" in json.dumps(
            message["params"]
        ):
            report.popups += 1
            report.problem(f"an 'Error in server' popup: {_short(message)}")


def _compare(report: FuzzReport, sent: list[tuple[Frame, Expected]], got: list[dict]) -> None:
    """Each usable id answered as often as it was sent, with an allowed outcome; the
    null-id answers exactly those expected."""
    wanted: Counter[str] = Counter()
    outcomes: dict[str, set[int | None]] = {}
    examples: dict[str, Frame] = {}
    nulls: Counter[int] = Counter()
    for frame, expectation in sent:
        for key, allowed in expectation.answers:
            wanted[key] += 1
            outcomes.setdefault(key, set()).update(allowed)  # a duplicate id: either
            examples.setdefault(key, frame)
        nulls.update(expectation.nulls)
    answers: dict[str, list[dict]] = {}
    null_codes: Counter[int] = Counter()
    for message in got:
        if "method" in message:
            continue
        if "id" not in message or message["id"] is None:
            report.null_id_responses += 1
            null_codes[(message.get("error") or {}).get("code")] += 1
            continue
        answers.setdefault(id_key(message["id"]), []).append(message)
    report.responses = sum(len(found) for found in answers.values())
    for key, count in wanted.items():
        found = answers.pop(key, [])
        example = examples[key]
        if len(found) < count:
            report.unanswered += count - len(found)
            report.problem(
                f"request {key} ({example.kind}) answered {len(found)} of {count} times: "
                f"{_short(example.body.decode('utf-8', 'replace'))}"
            )
        elif len(found) > count:
            report.duplicate_responses += len(found) - count
            report.problem(f"request {key} answered {len(found)} times, sent {count}")
        allowed = outcomes[key]
        for answer in found:
            code = (answer.get("error") or {}).get("code")
            report.outcomes["result" if code is None else str(code)] += 1
            if code not in allowed and code != -32603:  # internal errors counted apart
                report.wrong_codes += 1
                report.problem(
                    f"request {key} ({example.kind}) got {code}, expected one of "
                    f"{sorted(allowed, key=str)}: {_short(answer)} for "
                    f"{_short(example.body.decode('utf-8', 'replace'))}"
                )
    for key, found in answers.items():
        report.duplicate_responses += len(found)
        report.problem(f"answers to id {key}, which was never sent: {_short(found[0])}")
    if null_codes != nulls:
        report.problem(f"null-id answers {dict(null_codes)}, expected {dict(nulls)}")
        missing = nulls - null_codes
        report.unanswered += sum(missing.values())
        report.duplicate_responses += sum((null_codes - nulls).values())


def _all_answered(sent: list[tuple[Frame, Expected]], got: list[dict]) -> bool:
    wanted: Counter[str] = Counter()
    nulls = 0
    for _, expectation in sent:
        wanted.update(key for key, _ in expectation.answers)
        nulls += len(expectation.nulls)
    have: Counter[str] = Counter()
    have_nulls = 0
    for message in got:
        if "method" in message:
            continue
        if message.get("id") is None:
            have_nulls += 1
        else:
            have[id_key(message["id"])] += 1
    return have_nulls >= nulls and all(have[key] >= count for key, count in wanted.items())


def fuzz_session(
    scratch: Path, seed: int, messages: int, report: FuzzReport, answer_timeout: float = 120.0
) -> None:
    """One server (the STAND-IN engine, its bundle ready, one finding published) fed
    ``messages`` random well-framed frames; then it must still answer, shut down and
    exit 0."""
    targets = make_workspace(scratch)
    log_path = scratch / "server.log"
    with open(log_path, "wb") as log:
        client = RawClient(
            STAND_IN_SERVER, fuzz_env(scratch), stderr=log, replies=client_replies, cwd=scratch
        )
        try:
            _fuzz(client, targets, seed, messages, report, answer_timeout)
        finally:
            if client.process.poll() is None:
                client.process.kill()
                client.process.wait(10)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    report.log_tracebacks = text.count("Traceback (most recent call last)")


def _fuzz(
    client: RawClient,
    targets: Targets,
    seed: int,
    count: int,
    report: FuzzReport,
    answer_timeout: float,
) -> None:
    client.initialize(targets.root, {"bundle": str(targets.bundle), "debounceMs": 0})
    client.wait_ready()
    client.notify(
        types.TEXT_DOCUMENT_DID_OPEN,
        {
            "textDocument": {
                "uri": targets.uri,
                "languageId": "python",
                "version": 1,
                "text": APP_WITH_PRINT,
            }
        },
    )
    hunks = _findings(client, targets.uri)
    before = len(client.seen)
    generator = MessageGenerator(seed, dataclasses.replace(targets, hunks=hunks))
    sent: list[tuple[Frame, Expected]] = []
    for _ in range(count):
        frame = generator.frame()
        expectation = expected(frame.body)
        sent.append((frame, expectation))
        report.kinds[frame.kind] += 1
        try:
            client.send_raw(frame.data)
        except OSError:
            break  # the server is gone: counted below
    report.messages = len(sent)
    report.requests = sum(len(e.answers) for _, e in sent)
    report.refusals_without_id = sum(len(e.nulls) for _, e in sent)
    deadline = time.monotonic() + answer_timeout
    while time.monotonic() < deadline and client.process.poll() is None:
        client.collect(0.2)
        if _all_answered(sent, client.seen[before:]):
            break
    client.collect(0.5)  # answers sent twice arrive late
    if client.process.poll() is not None:
        report.crashes += 1
        report.problem(f"the server exited with {client.process.returncode} during the fuzz")
    got = client.seen[before:]
    _compare(report, sent, got)
    _check_messages(report, got)
    if report.crashes:
        return
    # Still alive: a valid request is answered, then a clean shutdown and exit 0.
    client.request(
        "fuzz-final-status", types.WORKSPACE_EXECUTE_COMMAND, {"command": "hunkwise.status"}
    )
    if "result" not in client.response("fuzz-final-status", timeout=60):
        report.problem("the final status request failed")
    client.request("fuzz-final-shutdown", types.SHUTDOWN)
    answer = client.response("fuzz-final-shutdown", timeout=60)
    if answer.get("result", "missing") is not None:
        report.problem(f"shutdown answered {_short(answer)}")
    client.notify(types.EXIT)
    try:
        code: int | None = client.process.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    if code != 0:
        report.crashes += 1
        report.problem(f"the server exited with {code} after shutdown and exit")


def frame_break_session(scratch: Path, breaking: FrameBreak, report: FuzzReport) -> None:
    """One server fed a few good messages and then ``breaking``: it must exit 1 (not shut
    down) with the reason in its log and no traceback."""
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = scratch / "server.log"
    report.frame_breaks += 1
    with open(log_path, "wb") as log:
        client = RawClient(SERVER, fuzz_env(scratch), stderr=log)
        try:
            client.initialize(scratch)
            client.request(
                "before", types.WORKSPACE_EXECUTE_COMMAND, {"command": "hunkwise.status"}
            )
            client.response("before")
            try:
                client.send_raw(breaking.data)
                if breaking.end_input:
                    client.end_input()
            except BrokenPipeError:
                pass  # it stopped reading before the end of the bytes, as it should
            code = client.process.wait(30)
        except Exception as error:
            code = None
            report.problem(f"frame break {breaking.kind!r}: {type(error).__name__}: {error}")
        finally:
            if client.process.poll() is None:
                client.process.kill()
                client.process.wait(10)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    clean = (
        code == 1
        and "unreadable input from the client" in text
        and breaking.reason in text
        and "Traceback" not in text
        and "MemoryError" not in text
    )
    if clean:
        report.clean_exits += 1
    else:
        report.problem(f"frame break {breaking.kind!r}: exit {code}, log {_short(text[-600:])}")


def run_fuzz(
    scratch: Path, seed: int, messages: int, frame_breaks: int, answer_timeout: float = 120.0
) -> FuzzReport:
    """A fuzz session of ``messages`` frames and ``frame_breaks`` short sessions that end
    in broken framing, all from ``seed``."""
    report = FuzzReport(seed)
    started = time.monotonic()
    fuzz_session(scratch / "main", seed, messages, report, answer_timeout)
    rng = random.Random(seed)
    kinds = rng.sample(FRAME_BREAKS, len(FRAME_BREAKS))  # every kind before any twice
    for number in range(frame_breaks):
        breaking = frame_break(kinds[number % len(kinds)], rng)
        frame_break_session(scratch / f"break-{number}", breaking, report)
    report.seconds = time.monotonic() - started
    return report


def summary(report: FuzzReport) -> list[str]:
    """The report's counts, one per line."""
    return [
        f"seed {report.seed}",
        f"messages sent {report.messages} (requests with a usable id {report.requests}, "
        f"refusals expected without an id {report.refusals_without_id})",
        f"responses {report.responses}, null-id responses {report.null_id_responses}",
        f"unanswered {report.unanswered}, duplicate responses {report.duplicate_responses}",
        f"wrong error codes {report.wrong_codes}, internal errors {report.internal_errors}",
        f"leaks (traceback or path) {report.leaks}, 'Error in server' popups {report.popups}",
        "answers by outcome "
        + ", ".join(f"{name} {count}" for name, count in sorted(report.outcomes.items())),
        f"internal errors of notifications logged to the client {report.logged_errors}",
        f"crashes {report.crashes}",
        f"frame-break sessions {report.frame_breaks}, clean exits {report.clean_exits}",
        f"tracebacks in the server's own log {report.log_tracebacks}",
        f"wall time {report.seconds:.1f} s",
    ]
