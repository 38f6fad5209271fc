"""The language server under random bad traffic: a bounded fuzz run (about 30 s) of
bench/lsp_harness/fuzz_messages.py over stdio with its own raw client, and the cases it found,
each pinned down on its own. ``HUNKWISE_FUZZ_SEED=N`` reruns the fuzz with another seed
(the failure message names the seed it ran); bench/lsp_fuzz.py runs it for thousands of
messages."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from bench.lsp_harness import SERVER, STAND_IN_SERVER
from bench.lsp_harness.fuzz_messages import (
    FRAME_BREAKS,
    NOTIFICATIONS,
    REQUESTS,
    client_replies,
    expected,
    fuzz_env,
    make_workspace,
    run_fuzz,
    summary,
)
from bench.lsp_harness.raw_client import RawClient
from server.server import create_server

pytestmark = pytest.mark.slow

DEFAULT_SEED = 20261202
#: Messages in the test's fuzz session, and short sessions ending in broken framing (one of
#: each kind): about 30 s on the project's 2-core machine (bench/lsp_fuzz.py runs more).
MESSAGES, FRAME_BREAK_SESSIONS = 3_000, len(FRAME_BREAKS)


def test_the_generator_covers_every_request_method_the_server_has() -> None:
    server = create_server()
    methods = set(server.protocol.fm.builtin_features) | set(server.protocol.fm.features)
    assert {method for method in methods if method not in NOTIFICATIONS} == REQUESTS


def test_random_bad_traffic_gets_one_answer_per_request_and_leaves_the_server_alive(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("HUNKWISE_FUZZ_SEED", DEFAULT_SEED))
    report = run_fuzz(tmp_path, seed, MESSAGES, FRAME_BREAK_SESSIONS)
    shown = "\n".join([*summary(report), *report.problems])
    assert report.problems == [], f"HUNKWISE_FUZZ_SEED={seed}:\n{shown}"
    assert report.messages == MESSAGES and report.crashes == 0, shown
    assert report.logged_errors == 0, shown  # no notification handler failed
    assert report.clean_exits == report.frame_breaks == FRAME_BREAK_SESSIONS, shown
    # The traffic reached the handlers, not only the protocol's refusals.
    assert report.outcomes["result"] > 100 and report.outcomes["-32602"] > 100, shown
    assert report.requests == report.responses and report.unanswered == 0, shown


# -- the cases the fuzz found ---------------------------------------------------------------


def _hover(msg_id: Any, **extra_params: Any) -> dict[str, Any]:
    params = {"textDocument": {"uri": "file:///nowhere/x.py"}, "position": {"line": 0, "character": 0}}  # fmt: skip
    return {"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/hover", "params": {**params, **extra_params}}  # fmt: skip


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


#: body -> the answers it must get: (id, error code) pairs; id None is a null id.
_CASES: list[tuple[bytes, list[tuple[Any, int | None]]]] = [
    # A batch: LSP has none; each request in it refused, none run.
    (json.dumps([_hover("b1"), {"jsonrpc": "2.0", "method": "initialized", "params": {}}, 5]).encode(), [("b1", -32600), (None, -32600)]),
    (b"[]", [(None, -32600)]),
    # JSON that is no message object.
    (b"5", [(None, -32600)]),
    (b'"x"', [(None, -32600)]),
    (b'{"no": "method"}', [(None, -32600)]),
    # Only the frame's own object is a message, not one nested in its params.
    (json.dumps(_hover("inner", x={"jsonrpc": "2.0", "id": {}, "method": "m"})).encode(), [("inner", None)]),
    # Not JSON-RPC 2.0.
    (json.dumps({**_hover("v1"), "jsonrpc": "1.0"}).encode(), [("v1", -32600)]),
    (json.dumps({key: value for key, value in _hover("v0").items() if key != "jsonrpc"}).encode(), [("v0", -32600)]),
    # A request for a notification method.
    (b'{"jsonrpc": "2.0", "id": "n1", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": "file:///x.py", "languageId": "python", "version": 1, "text": ""}}}', [("n1", -32600)]),
    (b'{"jsonrpc": "2.0", "id": "n2", "method": "initialized", "params": {}}', [("n2", -32600)]),
    # Nested too deep: refused unread (codeAction/resolve would echo it, and overflow).
    (b'{"jsonrpc": "2.0", "id": "deep", "method": "codeAction/resolve", "params": {"title": "t", "data": %s}}' % _nested(400), [("deep", -32600)]),
    (b'{"jsonrpc": "2.0", "id": "deeper", "method": "textDocument/hover", "params": %s}' % _nested(5000), [(None, -32700)]),
    # A number longer than Python's int() reads.
    (b'{"jsonrpc": "2.0", "id": "digits", "method": "textDocument/hover", "params": %s}' % (b"9" * 5000), [(None, -32700)]),
    # Unknown methods: not found, whatever the params and members.
    (b'{"jsonrpc": "2.0", "id": "u1", "method": "hunkwise/noSuchMethod"}', [("u1", -32601)]),
    (b'{"jsonrpc": "2.0", "id": "u2", "method": "workspace/symbol", "params": 5, "result": 1}', [("u2", -32601)]),
    (b'{"jsonrpc": "2.0", "id": "u3", "method": "textDocument/completion", "params": 5}', [("u3", -32601)]),
    # Responses to requests the server never sent.
    (b'{"jsonrpc": "2.0", "id": "no-such", "result": 1}', []),
    (b'{"jsonrpc": "2.0", "id": "no-such", "error": {"code": "x"}}', []),
    (b'{"jsonrpc": "2.0", "id": [], "result": 1}', []),
]  # fmt: skip


def test_batches_non_objects_bad_versions_and_deep_messages_are_answered_by_json_rpc_rules(
    tmp_path: Path,
) -> None:
    client = RawClient(SERVER, fuzz_env(tmp_path))
    try:
        client.initialize(tmp_path)
        before = len(client.collect(1.0))
        for body, _ in _CASES:
            client.send(body)
        client.request("last", "workspace/executeCommand", {"command": "hunkwise.status"})
        assert "result" in client.response("last")
        messages = client.collect(1.0)[before:]
    finally:
        client.close()
    assert client.process.returncode == 0
    answers = [m for m in messages if "method" not in m and m.get("id") != "last"]
    got = sorted(((m["id"], (m.get("error") or {}).get("code")) for m in answers), key=str)
    wanted = sorted((answer for _, case in _CASES for answer in case), key=str)
    assert got == wanted
    for body, case in _CASES:  # the fuzz test's expectations say the same
        found = expected(body)
        assert sorted(code for msg_id, code in case if msg_id is None) == sorted(found.nulls)
        assert len(found.answers) == len([msg_id for msg_id, _ in case if msg_id is not None])
    popups = [m for m in messages if m.get("method") == "window/showMessage"]
    assert len(popups) <= 1, popups  # the "no bundle" warning at most


def test_a_reply_the_server_cannot_read_fails_the_command_waiting_for_it(tmp_path: Path) -> None:
    """The server's workspace/applyEdit answered with a result that is no
    ApplyWorkspaceEditResult: the command waiting for it is answered "not applied", with
    the reason."""
    targets = make_workspace(tmp_path)

    def unreadable(message: dict[str, Any]) -> dict[str, Any]:
        if message["method"] == types.WORKSPACE_APPLY_EDIT:
            return {"jsonrpc": "2.0", "id": message["id"], "result": 5}
        return client_replies(message)

    client = RawClient(STAND_IN_SERVER, fuzz_env(tmp_path), replies=unreadable, cwd=tmp_path)
    try:
        client.initialize(targets.root, {"bundle": str(targets.bundle), "debounceMs": 0})
        client.wait_ready()
        document = {"uri": targets.uri, "languageId": "python", "version": 1, "text": "a = 1\n"}
        client.notify("textDocument/didOpen", {"textDocument": document})
        whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
        argument = {"uri": targets.uri, "range": whole, "instruction": "Shout."}
        client.request(
            "edit",
            "workspace/executeCommand",
            {"command": "hunkwise.editWithInstruction", "arguments": [argument]},
        )
        answer = client.response("edit")
        client.request("after", "workspace/executeCommand", {"command": "hunkwise.status"})
        assert client.response("after")["result"]["state"] == "ready"
    finally:
        client.close()
    assert client.process.returncode == 0
    result = answer["result"]
    assert result["applied"] is False and "cannot be read" in result["reason"], answer
    assert len([m for m in client.seen if m.get("id") == "edit"]) == 1


def test_shutdown_while_a_command_waits_answers_both(tmp_path: Path) -> None:
    """A command waiting on the client (an applyEdit it never answers) when shutdown
    comes: the command is answered "cancelled", the shutdown with null (pygls answered it
    with an internal error and stayed up), and the server exits 0."""
    targets = make_workspace(tmp_path)
    client = RawClient(STAND_IN_SERVER, fuzz_env(tmp_path), stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        client.initialize(targets.root, {"bundle": str(targets.bundle), "debounceMs": 0})
        client.wait_ready()
        document = {"uri": targets.uri, "languageId": "python", "version": 1, "text": "a = 1\n"}
        client.notify("textDocument/didOpen", {"textDocument": document})
        whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
        argument = {"uri": targets.uri, "range": whole, "instruction": "Shout."}
        client.request(
            "edit",
            "workspace/executeCommand",
            {"command": "hunkwise.editWithInstruction", "arguments": [argument]},
        )
        deadline = time.monotonic() + 30
        while not [m for m in client.seen if m.get("method") == types.WORKSPACE_APPLY_EDIT]:
            assert time.monotonic() < deadline, "no workspace/applyEdit"
            client.collect(0.1)
        client.request("bye", "shutdown")
        shutdown = client.response("bye")
        cancelled = client.response("edit")
        client.notify("exit")
        client.process.wait(30)
    finally:
        if client.process.poll() is None:
            client.process.kill()
    assert shutdown == {"jsonrpc": "2.0", "id": "bye", "result": None}
    assert cancelled["error"]["code"] == -32800, cancelled
    assert client.process.returncode == 0
