"""The language server against what a careless or hostile client can send: raw JSON-RPC
frames with bad params, bad ids and unknown methods (each request answered exactly once),
a second ``initialize``, documents with characters ``str.splitlines`` breaks at but LSP
does not, and commands aimed outside the workspace, past a document's end or with huge
instructions. Over stdio with the real server, and the STAND-IN engine of
bench/lsp_harness/stand_in_engine.py where a bundle must be ready."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace.position_codec import PositionCodec

from bench.lsp_harness import ROOT, SERVER, STAND_IN_SERVER
from bench.lsp_harness.documents import open_document
from bench.lsp_harness.raw_client import RawClient
from bench.lsp_harness.stand_in_engine import write_stand_in_bundle
from server.text import LspTextDocument, model_safe
from tests.gitrepo import GitRepo
from tests.lsp_server_variants import SHORT_APPLY_EDIT_TIMEOUT_SERVER, STRICT_TOKENIZER_SERVER
from tests.lsp_session import execute, published, session, status


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}


# -- every request gets exactly one response ----------------------------------------------

_URI = {"uri": "file:///nowhere/x.py"}
_POINT = {"line": 0, "character": 0}
#: id -> (method, params, expected error code)
_BAD_REQUESTS: dict[Any, tuple[str, Any, int]] = {
    1: ("textDocument/hover", {"textDocument": _URI, "position": {"line": -1, "character": 0}}, -32602),
    2: ("textDocument/codeAction", {"textDocument": _URI, "range": {"start": _POINT, "end": _POINT}}, -32602),
    3: ("workspace/executeCommand", {}, -32602),
    4: ("textDocument/hover", True, -32602),
    5: ("textDocument/hover", [1], -32602),
    6: ("textDocument/hover", 42, -32602),
    7: ("textDocument/hover", None, -32602),
    "eight": ("textDocument/codeAction", {"textDocument": _URI}, -32602),
    9: ("hunkwise/noSuchMethod", {}, -32601),
    10: ("workspace/executeCommand", {"command": "hunkwise.noSuchCommand"}, -32602),
    11: ("workspace/executeCommand", {"command": "hunkwise.dismiss", "arguments": [7]}, -32602),
    12: ("textDocument/diagnostic", {"textDocument": {}}, -32602),
}  # fmt: skip


def test_every_bad_request_gets_one_error_response_and_no_popup(tmp_path: Path) -> None:
    client = RawClient(SERVER, _env(tmp_path))
    try:
        client.request(0, "textDocument/hover", {"textDocument": _URI, "position": _POINT})
        assert client.response(0)["error"]["code"] == -32002  # before initialize
        assert "result" in client.initialize(tmp_path)
        for msg_id, (method, params, _) in _BAD_REQUESTS.items():
            client.request(msg_id, method, params)
        client.send({"jsonrpc": "2.0", "id": {"an": "object"}, "method": "textDocument/hover"})
        client.send({"jsonrpc": "2.0", "id": 13, "method": ["not", "a", "string"]})
        client.notify("textDocument/didOpen", {"textDocument": 5})
        client.notify("textDocument/didChange", [1])
        client.notify("textDocument/didChange", [1])
        client.notify("hunkwise/unknownNotification", {})
        client.send(b"{not json")
        messages = client.collect(3.0)
        # and a valid request is still answered afterwards
        client.request(99, "workspace/executeCommand", {"command": "hunkwise.status"})
        assert client.response(99)["result"]["state"] == "no-bundle"
    finally:
        client.close()
    responses = [m for m in messages if "method" not in m]
    by_id: dict[Any, list[dict]] = {}
    for response in responses:
        assert "id" in response, response  # null when there is no usable id
        key = json.dumps(response.get("id"))
        by_id.setdefault(key, []).append(response)
    for msg_id, (method, _, code) in _BAD_REQUESTS.items():
        (answer,) = by_id.pop(json.dumps(msg_id))
        assert "error" in answer, (method, answer)
        assert answer["error"]["code"] == code, (method, answer)
        assert "data" not in answer["error"], answer
    (bad_method,) = by_id.pop("13")
    assert bad_method["error"]["code"] == -32600
    # No usable id: answered with a null id (an Invalid Request and the Parse Error).
    assert sorted(a["error"]["code"] for a in by_id.pop("null")) == [-32700, -32600]
    assert set(by_id) == {"0", '"init"'}  # answered above
    messages_of = {
        json.dumps(r["id"]): r["error"]["message"] for r in responses if "error" in r and r["id"]
    }
    assert "position" in messages_of["1"] and "-1" in messages_of["1"]
    assert "context" in messages_of["2"]
    assert "command" in messages_of["3"]
    for text in messages_of.values():
        assert str(ROOT) not in text and "site-packages" not in text and "Traceback" not in text
    popups = [m for m in messages if m.get("method") == "window/showMessage"]
    # The one popup is the expected "no bundle" warning (no git repository here).
    assert [
        p["params"]["message"] for p in popups if "Error in server" in p["params"]["message"]
    ] == []
    assert len(popups) <= 1


# -- framing ------------------------------------------------------------------------------


def test_header_names_are_read_in_any_case(tmp_path: Path) -> None:
    client = RawClient(SERVER, _env(tmp_path))
    try:
        client.initialize(tmp_path)
        status_request = {"command": "hunkwise.status"}
        body = {"jsonrpc": "2.0", "id": "lower", "method": "workspace/executeCommand"}
        client.send({**body, "params": status_request}, header=b"content-length")
        assert client.response("lower")["result"]["state"] == "no-bundle"
        body = {**body, "id": "typed", "params": status_request}
        text = json.dumps(body).encode()
        client.send_raw(
            b"CONTENT-LENGTH:%d\r\ncontent-type: application/vscode-jsonrpc; charset=utf-8"
            b"\r\n\r\n%s" % (len(text), text)
        )
        assert client.response("typed")["result"]["state"] == "no-bundle"
    finally:
        client.close()
    assert client.process.returncode == 0


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"Content-Length: 99999999999999\r\n\r\n{}", "over the server's limit"),
        (b"Content-Length: ten\r\n\r\n{}", "not a number"),
        (b"Content-Type: x\r\n\r\n{}", "without a Content-Length"),
        (b"GET / HTTP/1.1 " + b"x" * 5000 + b"\r\n", "longer than"),
    ],
    ids=["huge", "not-a-number", "no-length", "endless-line"],
)
def test_broken_framing_ends_the_server_with_its_reason(
    tmp_path: Path, frame: bytes, reason: str
) -> None:
    client = RawClient(SERVER, _env(tmp_path), stderr=subprocess.PIPE)
    try:
        client.initialize(tmp_path)
        client.send_raw(frame)
        client.process.wait(30)
    finally:
        if client.process.poll() is None:
            client.process.kill()
    assert client.process.stderr is not None
    log = client.process.stderr.read().decode()
    assert client.process.returncode == 1  # not shut down: the client may restart it
    assert "unreadable input from the client" in log and reason in log, log
    assert "Traceback" not in log and "MemoryError" not in log, log


def test_the_message_size_limit_is_a_server_option(tmp_path: Path) -> None:
    client = RawClient(
        (*SERVER, "--max-message-bytes", "2048"), _env(tmp_path), stderr=subprocess.PIPE
    )
    try:
        client.initialize(tmp_path)
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": "small",
                "method": "workspace/executeCommand",
                "params": {"command": "hunkwise.status", "arguments": []},
            }
        ).encode()
        client.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert client.response("small")["result"]["state"] == "no-bundle"
        client.send_raw(b"Content-Length: 4096\r\n\r\n" + b" " * 4096)
        client.process.wait(30)
    finally:
        if client.process.poll() is None:
            client.process.kill()
    log = client.process.stderr.read().decode()
    assert "Content-Length 4096 is over the server's limit of 2048 bytes" in log, log
    bad = subprocess.run([*SERVER, "--max-message-bytes", "10"], capture_output=True, text=True)
    assert bad.returncode == 2 and "at least 1024" in bad.stderr


def test_a_second_initialize_is_refused_and_the_model_host_starts_once(tmp_path: Path) -> None:
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    client = RawClient(STAND_IN_SERVER, _env(tmp_path))
    try:
        client.initialize(tmp_path, {"bundle": str(bundle)})
        client.wait_ready()
        client.request(
            "again", "initialize", {"processId": None, "rootUri": None, "capabilities": {}}
        )
        refused = client.response("again")
        assert refused["error"]["code"] == -32600
        assert "once" in refused["error"]["message"]
        client.request("after", "workspace/executeCommand", {"command": "hunkwise.status"})
        assert client.response("after")["result"]["state"] == "ready"
    finally:
        client.close()
    assert client.process.returncode == 0


# -- LSP's lines ----------------------------------------------------------------------------

#: Pieces of text: LSP line breaks, characters str.splitlines breaks at but LSP does not,
#: non-BMP characters (two UTF-16 units) and CJK.
_PIECES = st.sampled_from(
    ["a", "xyz", " ", "\n", "\r\n", "\r", "\f", "\v", "\x85", "\u2028", "\x1c", "😀", "é", "漢字"]
)
_TEXT = st.lists(_PIECES, max_size=12).map("".join)


def _reference_lines(text: str) -> list[str]:
    """LSP's lines, written out by hand: a line ends at "\\r\\n", "\\r" or "\\n" only."""
    lines, current, index = [], "", 0
    while index < len(text):
        char = text[index]
        if char == "\r" and text[index + 1 : index + 2] == "\n":
            lines.append(current)
            current, index = "", index + 2
            continue
        if char in "\r\n":
            lines.append(current)
            current = ""
        else:
            current += char
        index += 1
    return [*lines, current]


def _reference_offset(text: str, line: int, utf16: int) -> int:
    lines = _reference_lines(text)
    if line >= len(lines):
        return len(text)
    starts, offset = [], 0
    for index, content in enumerate(lines):
        starts.append(offset)
        offset += len(content)
        if index < len(lines) - 1:
            offset += 2 if text[offset : offset + 2] == "\r\n" else 1
    units, column = 0, 0
    for char in lines[line]:
        if units >= utf16:
            break
        units += 2 if ord(char) > 0xFFFF else 1
        column += 1
    return starts[line] + column


@st.composite
def _edit(draw: st.DrawFn, text: str) -> tuple[types.Position, types.Position, str]:
    """A change between two positions on code-point boundaries (columns may run past a
    line's end: LSP clamps them), replacing with random text."""
    lines = _reference_lines(text)

    def point() -> types.Position:
        line = draw(st.integers(0, len(lines)))
        content = lines[line] if line < len(lines) else ""
        column = draw(st.integers(0, len(content) + 2))
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in content[:column]) + max(
            0, column - len(content)
        )
        return types.Position(line, units)

    first, second = point(), point()
    if (second.line, second.character) < (first.line, first.character):
        first, second = second, first
    return first, second, draw(_TEXT)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), start=_TEXT)
def test_incremental_edits_follow_lsp_lines(data: st.DataObject, start: str) -> None:
    document = LspTextDocument("file:///x.txt", start, version=0, position_codec=PositionCodec())
    text = start
    for version in range(1, data.draw(st.integers(1, 8)) + 1):
        first, second, new = data.draw(_edit(text))
        begin = _reference_offset(text, first.line, first.character)
        end = max(begin, _reference_offset(text, second.line, second.character))
        text = text[:begin] + new + text[end:]
        document.apply_change(
            types.TextDocumentContentChangePartial(range=types.Range(first, second), text=new)
        )
        document.version = version
        assert document.source == text
        assert [line.rstrip("\r\n") for line in document.lines] == [
            line for line in _reference_lines(text)
        ][: len(document.lines)]


def test_a_form_feed_file_gets_its_diagnostic_on_the_right_line(tmp_path: Path) -> None:
    code = "".join(f"value_{n} = {n}\n" for n in range(1, 9))
    with_feeds = "\f\n".join(code.splitlines(keepends=True)[:4]) + "\f\x85\n" + code[40:]
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", feeds_dot_py=with_feeds)
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    uri = (repo.path / "feeds.py").as_uri()

    async def run() -> None:
        async with session(
            repo.path, {"bundle": str(bundle), "debounceMs": 0}, STAND_IN_SERVER, env=_env(tmp_path)
        ) as client:
            for _ in range(500):
                if (await status(client))["state"] == "ready":
                    break
                await asyncio.sleep(0.02)
            open_document(client, uri, with_feeds)
            target = with_feeds.rfind("value_")  # the start of the last line
            line = with_feeds.count("\n", 0, target)  # LSP lines: "\f" and "\x85" don't count
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(types.Position(line, 0), types.Position(line, 0)),
                            text="print('debug')\n",
                        )
                    ],
                )
            )
            (diagnostic,) = (await published(client, uri, 2)).diagnostics
            assert diagnostic.range == types.Range(
                types.Position(line, 0), types.Position(line, 14)
            )

    asyncio.run(run())


# -- text a tokenizer cannot take ----------------------------------------------------------


def test_model_safe_text_replaces_lone_surrogates_and_nul_one_for_one() -> None:
    text = 'x = "\udc80"\x00 \ud800 😀 é\n'
    safe = model_safe(text)
    assert safe == 'x = "\ufffd"\ufffd \ufffd 😀 é\n'
    assert len(safe) == len(text)
    safe.encode("utf-8")  # no surrogate left


def test_a_document_with_a_lone_surrogate_keeps_being_reviewed(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", odd_dot_py="a = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    uri = (repo.path / "odd.py").as_uri()
    odd = 'a = 1\nx = "\udc80"\nprint(x)\n'  # json.dumps sends "\\udc80"; NUL is "binary"

    def diagnostics(version: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in client.collect(0.2):
                params = message.get("params") or {}
                if message.get("method") == "textDocument/publishDiagnostics" and (
                    params.get("version") == version and params["diagnostics"]
                ):
                    return params["diagnostics"]
        raise AssertionError(f"no diagnostics for version {version}: {client.seen}")

    client = RawClient(STAND_IN_SERVER, _env(tmp_path))
    try:
        client.initialize(repo.path, {"bundle": str(bundle), "debounceMs": 0})
        client.wait_ready()
        document = {"uri": uri, "languageId": "python", "version": 1, "text": odd}
        client.notify("textDocument/didOpen", {"textDocument": document})
        assert diagnostics(1)[0]["range"]["start"]["line"] == 1
        client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": 2},
                "contentChanges": [{"text": odd + "print(2)\n"}],
            },
        )
        assert diagnostics(2)[0]["range"]["end"]["line"] >= 3
    finally:
        client.close()
    failures = [
        m for m in client.seen if "model failed" in str(m.get("params", {}).get("message", ""))
    ]
    assert failures == []


# -- commands act only where the user works ------------------------------------------------


def test_commands_refuse_files_outside_ranges_past_the_end_and_long_instructions(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\nb = 2\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    outside = tmp_path / "outside.py"
    outside.write_text("secret = 1\n")
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}

    async def edit(client, uri: str, selection=whole, instruction: str = "Shout.") -> Any:
        return await execute(
            client,
            "hunkwise.editWithInstruction",
            {"uri": uri, "range": selection, "instruction": instruction},
        )

    async def run() -> None:
        options = {"bundle": str(bundle), "maxInstructionChars": 50}
        async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
            for _ in range(500):
                if (await status(client))["state"] == "ready":
                    break
                await asyncio.sleep(0.02)
            for uri in ("file:///etc/hostname", outside.as_uri(), "untitled:Untitled-1"):
                with pytest.raises(JsonRpcInvalidParams, match="open documents"):
                    await edit(client, uri)
                with pytest.raises(JsonRpcInvalidParams, match="open documents"):
                    await execute(client, "hunkwise.applyRefinement", {"uri": uri, "hunk": "x"})
            app = (repo.path / "app.py").as_uri()
            far = {"start": {"line": 1_000_000, "character": 0}, "end": {"line": 1_000_000, "character": 0}}  # fmt: skip
            with pytest.raises(JsonRpcInvalidParams, match="past the end"):
                await edit(client, app, far)
            with pytest.raises(JsonRpcInvalidParams, match="maxInstructionChars"):
                await edit(client, app, whole, "x" * 51)
            assert client.edits == []
            # A file of the workspace that is not open, and then an open untitled buffer.
            assert await edit(client, app) == {"applied": True}
            open_document(client, "untitled:Untitled-1", "one\ntwo\n")
            assert await edit(client, "untitled:Untitled-1") == {"applied": True}
            assert client.edits[-1].edit.document_changes[0].edits[0].new_text == "ONE\n"

    asyncio.run(run())


# -- documents that are not files on disk -------------------------------------------------


async def _until_ready(client) -> None:
    for _ in range(500):
        if (await status(client))["state"] == "ready":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the stand-in bundle never loaded")


def _shown(client) -> list[str]:
    return [message.message for message in client.messages]


def test_an_untitled_document_gets_no_review_and_commands_say_to_save_it(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    untitled = "untitled:Untitled-1"

    async def run() -> None:
        options = {"bundle": str(bundle), "debounceMs": 0}
        async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
            await _until_ready(client)
            open_document(client, untitled, "print('debug')\n")
            logged = f"hunkwise: no review for {untitled}: not a file on disk"
            for _ in range(500):
                if logged in [m.message for m in client.log_messages]:
                    break
                await asyncio.sleep(0.02)
            assert logged in [m.message for m in client.log_messages]
            assert _shown(client) == [] and client.published == []  # opened: no popup
            answer = await execute(
                client, "hunkwise.applyRefinement", {"uri": untitled, "hunk": "x"}
            )
            reason = f"{untitled} is not a file on disk: save it to review it"
            assert answer == {"applied": False, "reason": reason}
            assert _shown(client) == [f"hunkwise: {reason}"]
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(untitled))
            )
            whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
            with pytest.raises(JsonRpcInvalidParams, match="is not open and not a file on disk"):
                await execute(
                    client,
                    "hunkwise.editWithInstruction",
                    {"uri": untitled, "range": whole, "instruction": "Shout."},
                )
            assert client.published == []

    asyncio.run(run())


def test_files_missing_on_disk_are_reviewed_from_the_buffer_or_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n", gone_dot_py="g = 1\n")
    repo.remove("gone.py")  # deleted on disk, still in HEAD
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    gone = (repo.path / "gone.py").as_uri()
    never_saved = (repo.path / "new" / "never.py").as_uri()  # its directory is missing too
    missing = (repo.path / "missing.py").as_uri()
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}

    async def run() -> None:
        options = {"bundle": str(bundle), "debounceMs": 0}
        async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
            await _until_ready(client)
            open_document(client, gone, "g = 1\nprint(g)\n")
            open_document(client, never_saved, "print('new')\n")
            (on_gone,) = (await published(client, gone, 1)).diagnostics
            assert on_gone.range.start.line == 1  # against HEAD's gone.py
            (on_new,) = (await published(client, never_saved, 1)).diagnostics
            assert on_new.range.start.line == 0  # all of it added
            hunk = on_new.data["hunk"]
            refined = await execute(
                client, "hunkwise.applyRefinement", {"uri": never_saved, "hunk": hunk}
            )
            assert refined == {"applied": True}
            edit = {"uri": gone, "range": whole, "instruction": "Shout."}
            assert await execute(client, "hunkwise.editWithInstruction", edit) == {"applied": True}
            assert client.edits[-1].edit.document_changes[0].edits[0].new_text == "G = 1\n"
            # Neither open nor on disk: refused, saying so, before anything is read.
            for name, argument in (
                (
                    "hunkwise.editWithInstruction",
                    {"uri": missing, "range": whole, "instruction": "x"},
                ),
                ("hunkwise.applyRefinement", {"uri": missing, "hunk": hunk}),
            ):
                with pytest.raises(JsonRpcInvalidParams, match="no such file on disk"):
                    await execute(client, name, argument)
            said = _shown(client) + [m.message for m in client.log_messages]
            assert not [m for m in said if "model failed" in m or "FileNotFound" in m], said

    asyncio.run(run())


# -- text a tokenizer cannot take, in commands ----------------------------------------------


def test_instructions_selections_and_refined_code_reach_the_model_model_safe(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    app = (repo.path / "app.py").as_uri()
    odd = 'a = 1\nx = "\udc80"\nprint(x)\n'
    line = {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 0}}

    def new_text(client) -> str:
        return client.edits[-1].edit.document_changes[0].edits[0].new_text

    async def run() -> None:
        options = {"bundle": str(bundle), "debounceMs": 0}
        async with session(
            repo.path, options, STRICT_TOKENIZER_SERVER, env=_env(tmp_path)
        ) as client:
            await _until_ready(client)
            open_document(client, app, odd)
            (finding,) = (await published(client, app, 1)).diagnostics
            hunk = finding.data["hunk"]
            answer = await execute(client, "hunkwise.applyRefinement", {"uri": app, "hunk": hunk})
            assert answer == {"applied": True}, _shown(client)
            assert new_text(client) == 'a = 1\nx = "\ufffd"\n'  # the print( line dropped
            edit = {"uri": app, "range": line, "instruction": "Shout \udc80 and \x00 \ud800."}
            assert await execute(client, "hunkwise.editWithInstruction", edit) == {"applied": True}
            assert new_text(client) == 'X = "\ufffd"\n'
            # A NUL keeps a buffer from review (binary) but not from an instruction edit.
            open_document(client, "untitled:nul", 'nul = "\x00"\n')
            first = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
            edit = {"uri": "untitled:nul", "range": first, "instruction": "Shout."}
            assert await execute(client, "hunkwise.editWithInstruction", edit) == {"applied": True}
            assert new_text(client) == 'NUL = "\ufffd"\n'
            assert _shown(client) == []

    asyncio.run(run())


# -- trainFromRepo checks its arguments before it starts ----------------------------------


def test_train_from_repo_refuses_bad_arguments_before_the_trainer_starts(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n")
    (repo.path / "models" / "local").mkdir(parents=True)
    (repo.path / "models" / "local" / "config.json").write_text("{}")
    (tmp_path / "not-a-model").mkdir()
    pid_file = tmp_path / "trainer.pid"
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"steps": 1, "pid_file": str(pid_file)}))
    env = {
        **_env(tmp_path),
        "HUNKWISE_STAND_IN_CONTROL": str(control),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    work = tmp_path / "cache" / "hunkwise"  # where the default bundle would be written

    async def train(client, argument: Any) -> Any:
        return await execute(client, "hunkwise.trainFromRepo", argument)

    async def run() -> None:
        async with session(repo.path, {}, STAND_IN_SERVER, env=env) as client:
            for _ in range(500):
                if (await status(client))["state"] == "no-bundle":
                    break
                await asyncio.sleep(0.02)
            before = len(client.messages)
            for argument, field in (
                (7, "object argument"),
                ({"base": 5}, "'base'"),
                ({"base": ["tiny"]}, "'base'"),
                ({"base": "ti\x00ny"}, "'base'"),
                ({"tasks": 5}, "'tasks'"),
                ({"tasks": {"rnp": 1}}, "'tasks'"),
                ({"tasks": ["rnp", 3]}, "'tasks'"),
                ({"tasks": "rnp,nope"}, "'tasks' has unknown tasks 'nope'"),
            ):
                with pytest.raises(JsonRpcInvalidParams, match=field):
                    await train(client, argument)
            for base, reason in (
                ("./no-such-model", "no such directory"),
                (str(tmp_path / "not-a-model"), "has no config.json"),
                ("nobody/no-such-model", "the hub is offline"),
                ("bundle:base", "names the base stored in a bundle"),
                ("no..such", "base model 'no..such'"),  # a name the hub refuses as an id
            ):
                answer = await train(client, {"base": base, "tasks": ["rnp"]})
                assert answer["trained"] is False and reason in answer["reason"], answer
                assert client.messages[-1].message == f"hunkwise: cannot train: {answer['reason']}"
            assert len(client.messages) == before + 5  # one message per refusal
            assert not pid_file.exists() and not work.exists()  # nothing started or written
            began = [r for rs in client.progress_reports.values() for r in rs if r.kind == "begin"]
            assert not [r.title for r in began if "training" in r.title]
            # A relative base is a directory of the repository, where the trainer runs.
            answer = await train(client, {"base": "models/local", "tasks": "rnp"})
            assert answer["trained"] is True, answer
            ran = [m.message for m in client.log_messages if "running" in m.message]
            assert f"--base {repo.path / 'models' / 'local'} " in ran[-1], ran

    asyncio.run(run())


# -- notifications pygls fails on, and a client that never answers an edit -----------------

_NOWHERE = "file:///nowhere/a.py"
#: case -> (the notifications sent, the one line the server logs for them)
_BAD_NOTIFICATIONS: dict[str, tuple[list[tuple[str, Any]], str]] = {
    "change-unopened": (
        [
            ("textDocument/didChange", {"textDocument": {"uri": _NOWHERE, "version": 2}, "contentChanges": [{"text": "x"}]}),
            ("textDocument/didChange", {"textDocument": {"uri": _NOWHERE, "version": 3}, "contentChanges": [{"text": "y"}]}),
            ("textDocument/didSave", {"textDocument": {"uri": _NOWHERE}}),
            ("textDocument/didClose", {"textDocument": {"uri": _NOWHERE}}),
        ],
        f"ignoring a change to {_NOWHERE}: it is not open",
    ),
    "cancel-object-id": (
        [("$/cancelRequest", {"id": {}})],
        "ignoring a notification: invalid params for $/cancelRequest: id: must be an integer or a string",
    ),
    "progress-cancel-list-token": (
        [("window/workDoneProgress/cancel", {"token": []})],
        "ignoring a notification: invalid params for window/workDoneProgress/cancel: token: must be an integer or a string",
    ),
    "open-object-uri": (
        [("textDocument/didOpen", {"textDocument": {"uri": {}, "languageId": "python", "version": 1, "text": "x"}})],
        "ignoring a notification: invalid params for textDocument/didOpen: textDocument.uri: must be a string",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_BAD_NOTIFICATIONS))
def test_a_notification_pygls_would_fail_on_is_logged_in_one_plain_line(
    tmp_path: Path, case: str
) -> None:
    notifications, line = _BAD_NOTIFICATIONS[case]
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file:
        client = RawClient(SERVER, _env(tmp_path), stderr=log_file)
        try:
            client.initialize(tmp_path)
            for method, params in notifications:
                client.notify(method, params)
            client.request("after", "workspace/executeCommand", {"command": "hunkwise.status"})
            answer = client.response("after")["result"]
        finally:
            client.close()
    assert client.process.returncode == 0
    assert answer["documents"] == 0  # nothing was opened, not even a document named "{}"
    log = log_path.read_text()
    assert log.count(line) == 1 and "Traceback" not in log and "internal error" not in log, log
    told = [(m.get("params") or {}).get("message", "") for m in client.seen if "method" in m]
    assert not [text for text in told if "internal error" in text], told


def test_an_edit_the_client_never_answers_times_out_and_a_late_answer_is_ignored(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    app = (repo.path / "app.py").as_uri()
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file:
        client = RawClient(SHORT_APPLY_EDIT_TIMEOUT_SERVER, _env(tmp_path), stderr=log_file)
        try:
            client.initialize(repo.path, {"bundle": str(bundle), "debounceMs": 0})
            client.wait_ready()
            argument = {"uri": app, "range": whole, "instruction": "Shout."}
            started = time.monotonic()
            client.request(
                "edit",
                "workspace/executeCommand",
                {"command": "hunkwise.editWithInstruction", "arguments": [argument]},
            )
            answer = client.response("edit")
            waited = time.monotonic() - started
            (asked,) = [m for m in client.seen if m.get("method") == "workspace/applyEdit"]
            client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {"applied": True}})
            client.request("after", "workspace/executeCommand", {"command": "hunkwise.status"})
            assert client.response("after")["result"]["state"] == "ready"
        finally:
            client.close()
    assert client.process.returncode == 0
    reason = "the editor did not answer workspace/applyEdit within 0.5 s"
    assert answer["result"] == {"applied": False, "reason": reason}, answer
    assert 0.5 <= waited < 10
    shown = [m["params"]["message"] for m in client.seen if m.get("method") == "window/showMessage"]
    assert shown == [f"hunkwise: {reason}"]
    log = log_path.read_text()
    assert f"ignoring a response to {asked['id']!r}: the server no longer waits for it" in log, log
    assert "Traceback" not in log and "internal error" not in log, log
    assert len([m for m in client.seen if m.get("id") == "edit"]) == 1


def test_an_edit_the_editor_refuses_with_an_error_answer_is_reported_not_raised(
    tmp_path: Path,
) -> None:
    """Eglot answers applyEdit with an error when the document moved on ("Edits on x
    require version 2, you have 3"): the command says so, without an internal error."""
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add", app_dot_py="a = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    app = (repo.path / "app.py").as_uri()
    whole = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    refusal = "Edits on `app.py' require version 2, you have 3"

    def refuse(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["method"] != "workspace/applyEdit":
            return {"jsonrpc": "2.0", "id": message["id"], "result": None}
        error = {"code": -32001, "message": refusal}
        return {"jsonrpc": "2.0", "id": message["id"], "error": error}

    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file:
        client = RawClient(STAND_IN_SERVER, _env(tmp_path), stderr=log_file, replies=refuse)
        try:
            client.initialize(repo.path, {"bundle": str(bundle), "debounceMs": 0})
            client.wait_ready()
            argument = {"uri": app, "range": whole, "instruction": "Shout."}
            client.request(
                "edit",
                "workspace/executeCommand",
                {"command": "hunkwise.editWithInstruction", "arguments": [argument]},
            )
            answer = client.response("edit")
        finally:
            client.close()
    reason = f"the editor did not apply the edit: {refusal}"
    assert answer.get("result") == {"applied": False, "reason": reason}, answer
    shown = [m["params"]["message"] for m in client.seen if m.get("method") == "window/showMessage"]
    assert shown == [f"hunkwise: {reason}"]
    log = log_path.read_text()
    assert "Traceback" not in log and "internal error" not in log, log
