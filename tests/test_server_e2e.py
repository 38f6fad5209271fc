"""The language server end to end: ``python -m server`` over stdio, a real git repository
in a temp dir and the session's trained tiny bundle (threshold 0.0 flags every hunk). One
server serves the module, and each test opens documents of its own, so that any test runs
alone or in any order; a second server runs without a bundle; a third, a bundle without an
rnp adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from bench.lsp_harness.documents import open_document, replace
from tests.gitrepo import GitRepo
from tests.lsp_session import Published, configure, execute, published, session, status, wait_until
from training.hunks import Hunk
from training.review import finding_lines, format_probability, hunks_for
from training.tasks import ADAPTER_TASKS, RNP
from training.xdiff import diff_texts

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "".join(f"def step_{n}(value):\n    return value + {n}\n\n" for n in range(1, 11))
OTHER = "".join(f"line {n}\n" for n in range(1, 16))
LIB = "".join(f"item_{n} = {n}\n" for n in range(1, 13))
TAIL = "".join(f"row {n}\n" for n in range(1, 16))
LOCK = '[[package]]\nname = "x"\nversion = "1"\n'
#: A file for the CLI-parity test: indented functions, so columns matter.
PARITY = "".join(
    f"class Part{n}:\n    def run(self, value):\n        total = value * {n}\n        return total\n\n"
    for n in range(1, 9)
)
PENDING = "This change may need review (p="
#: Committed copies of APP, one for each test that edits it with ``_edit_app``.
APP_COPIES = (
    "app.py",
    "hover.py",
    "actions.py",
    "instruction.py",
    "threshold.py",
    "burst.py",
    "corrupt.py",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("workspace") / "repo")
    for name in APP_COPIES:
        repo.write(name, APP)
    repo.commit(
        "Add the app",
        other_dot_py=OTHER,
        lib_dot_py=LIB,
        tail_dot_py=TAIL,
        parity_dot_py=PARITY,
        poetry_dot_lock=LOCK,
        vendor__x_dot_py=LIB,
        blob_dot_dat=b"\x00\x01binary\x00" * 10,
    )
    return repo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(repo: GitRepo, tiny_bundle: Path):
    options = {
        "bundle": str(tiny_bundle),
        "threshold": 0.0,
        "maxNewTokens": 6,
        "debounceMs": 30,
        "device": "cpu",
    }
    async with session(repo.path, options) as client:
        client.first_status = await status(client)
        for _ in range(3000):
            if (await status(client))["state"] != "loading":
                break
            await asyncio.sleep(0.05)
        yield client
    # shutdown and exit are clean: exit status 0, nothing left running
    assert client._server.returncode == 0


def _uri(repo: GitRepo, name: str) -> str:
    return (repo.path / name).as_uri()


@dataclasses.dataclass(frozen=True)
class EditedApp:
    uri: str
    text: str
    hunks: list[Hunk]
    published: Published


async def _edit_app(client, repo: GitRepo, name: str) -> EditedApp:
    """Open ``name``, a committed copy of APP (nothing to review at version 1), and make an
    edit of two hunks: a print added (version 2) and a return changed (version 3); once
    version 3's diagnostics are published."""
    uri = _uri(repo, name)
    open_document(client, uri, APP)
    await published(client, uri, 1)
    start = APP.index("def step_3")
    text = replace(client, uri, 2, APP, start, start, "print('debug', value)\n")
    end = text.index("    return value + 9")
    text = replace(client, uri, 3, text, end, end + len("    return value + 9"), "    return 9")
    return EditedApp(uri, text, diff_texts(APP, text, name), await published(client, uri, 3))


def _expected_range(hunk: Hunk, text: str) -> types.Range:
    lines = text.split("\n")
    if hunk.added:
        first, last = hunk.added[0][0], hunk.added[-1][0]
        code = lines[first - 1]
        indent = len(code) - len(code.lstrip()) if code.strip() else 0  # the CLI's column
        return types.Range(
            types.Position(first - 1, indent), types.Position(last - 1, len(lines[last - 1]))
        )
    raise AssertionError("not an adding hunk")


async def test_requests_are_answered_while_the_bundle_loads(client, tiny_bundle: Path) -> None:
    assert client.first_status["state"] == "loading"
    answer = await status(client)
    assert answer["state"] == "ready", answer
    assert answer["adapters"] == list(ADAPTER_TASKS)
    assert answer["device"] == "cpu"
    assert Path(answer["bundle"]) == tiny_bundle
    assert answer["base"] == "HEAD"
    assert answer["threshold"] == 0.0  # the setting, over the bundle's


async def test_an_edit_gets_one_diagnostic_per_hunk(client, repo: GitRepo) -> None:
    edited = await _edit_app(client, repo, "app.py")
    assert (await published(client, edited.uri, 1)).diagnostics == []
    text, hunks, first = edited.text, edited.hunks, edited.published
    assert len(hunks) == 2
    assert [d.range for d in first.diagnostics] == [_expected_range(h, text) for h in hunks]
    for diagnostic, hunk in zip(first.diagnostics, hunks, strict=True):
        assert diagnostic.source == "hunkwise"
        assert diagnostic.code == "review-needed"
        assert diagnostic.severity == types.DiagnosticSeverity.Information
        assert diagnostic.data["hunk"] == hunk.id
        assert 0.0 <= diagnostic.data["p"] <= 1.0
        if diagnostic.message.startswith(PENDING):
            # The message prints p as the CLI does; data carries it to two decimals.
            shown = diagnostic.message.removeprefix(PENDING).removesuffix(")")
            assert shown == format_probability(float(shown))
            assert abs(float(shown) - diagnostic.data["p"]) <= 0.005


async def test_hover_shows_the_comment_probability_bundle_and_base(
    client, repo: GitRepo, tiny_bundle: Path
) -> None:
    edited = await _edit_app(client, repo, "hover.py")
    uri = edited.uri
    line = edited.hunks[0].added[0][0] - 1

    async def hover_text() -> str:
        answer = await client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line, 3),
            )
        )
        assert answer is not None
        assert answer.range.start.line == line
        return answer.contents.value

    text = await hover_text()
    assert "may need review** (p = 0." in text
    assert f"bundle: `{tiny_bundle}`" in text
    assert f"base: HEAD ({repo.head()[:7]})" in text
    # Comments arrive after the scores; the hover then shows the comment.
    for _ in range(1500):
        if "pending" not in text:
            break
        await asyncio.sleep(0.02)
        text = await hover_text()
    assert "pending" not in text
    nothing = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 0)
        )
    )
    assert nothing is None


async def test_code_actions_and_resolve_give_a_workspace_edit(client, repo: GitRepo) -> None:
    edited = await _edit_app(client, repo, "actions.py")
    uri = edited.uri
    diagnostic = client.diagnostics[uri][0]
    hunk = edited.hunks[0]
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(
                diagnostic.range.start, types.Position(diagnostic.range.end.line + 1, 0)
            ),
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )
    titles = [action.title for action in actions]
    assert titles == [
        "Apply suggested refinement",
        "Dismiss this review finding",
        "Edit selection with instruction…",
    ]
    refine, dismiss, rewrite = actions
    assert refine.kind == types.CodeActionKind.QuickFix and refine.edit is None
    assert refine.data["hunk"] == hunk.id
    assert dismiss.command.command == "hunkwise.dismiss"
    assert rewrite.kind == types.CodeActionKind.RefactorRewrite
    assert rewrite.command.command == "hunkwise.editWithInstruction"

    resolved = await client.code_action_resolve_async(refine)
    (change,) = resolved.edit.document_changes
    assert change.text_document.uri == uri and change.text_document.version == 3
    (edit,) = change.edits
    assert edit.range == types.Range(
        types.Position(hunk.new_start - 1, 0), types.Position(hunk.new_start - 1 + hunk.new_len, 0)
    )
    # Cached: a second resolve (editors resolve on hover of the item) gives the same edit.
    again = await client.code_action_resolve_async(refine)
    assert again.edit == resolved.edit


async def test_edit_with_instruction_sends_workspace_apply_edit(client, repo: GitRepo) -> None:
    uri = (await _edit_app(client, repo, "instruction.py")).uri
    before = len(client.edits)
    result = await execute(
        client,
        "hunkwise.editWithInstruction",
        {
            "uri": uri,
            "range": {"start": {"line": 0, "character": 4}, "end": {"line": 1, "character": 2}},
            "instruction": "Add a docstring.",
        },
    )
    assert result == {"applied": True}
    (request,) = client.edits[before:]
    (change,) = request.edit.document_changes
    assert change.text_document.version == 3
    assert change.edits[0].range == types.Range(types.Position(0, 0), types.Position(2, 0))


async def test_diagnostics_say_and_point_where_hunkwise_review_does(
    client, repo: GitRepo, tiny_bundle: Path
) -> None:
    """The same hunks through ``hunkwise review`` (text and JSON) and the server: each
    diagnostic starts at the line:col the CLI prints, ends where the CLI's end_line
    ends, and its code and message are the CLI's, comments included."""
    text = PARITY.replace(
        "        total = value * 2\n", "        print('debug', value)\n        total = value * 2\n"
    )
    text = text.replace("        return total\n\nclass Part5", "\nclass Part5")  # a deletion
    text = text.replace(
        "    def run(self, value):\n        total = value * 7",
        "    def run(self, value, scale=1):\n        total = value * 7 * scale",
    )
    path = repo.path / "parity.py"
    path.write_text(text)
    try:
        uri = _uri(repo, "parity.py")
        open_document(client, uri, text)
        await published(client, uri, 1)
        await _comments_done(client)
        diagnostics = [p for p in client.published if p.uri == uri][-1].diagnostics
        cli = [
            sys.executable, "-c", "from training.cli import main; main()", "review",
            "--repo", str(repo.path), "--bundle", str(tiny_bundle), "--threshold", "0",
            "--max-new-tokens", "6", "--device", "cpu", "--exit-zero", "-q",
        ]  # fmt: skip
        env = {**repo.env, "HF_HUB_OFFLINE": "1"}
        printed = subprocess.run(cli, cwd=repo.path, env=env, capture_output=True, text=True)
        as_json = subprocess.run(
            [*cli, "--json"], cwd=repo.path, env=env, capture_output=True, text=True
        )
        assert printed.returncode == 0 and as_json.returncode == 0, printed.stderr
        findings = [f for f in json.loads(as_json.stdout)["findings"] if f["path"] == "parity.py"]
        lines = [line for line in printed.stdout.splitlines() if line.startswith("parity.py:")]
        assert len(findings) == len(lines) == len(diagnostics) == 3
        for diagnostic, finding, line in zip(diagnostics, findings, lines, strict=True):
            start, end = diagnostic.range.start, diagnostic.range.end
            where = f"parity.py:{start.line + 1}:{start.character + 1}"
            assert line == f"{where}: warning: {diagnostic.message} [{diagnostic.code}]"
            assert (start.line + 1, end.line + 1) == (finding["start_line"], finding["end_line"])
            assert diagnostic.data["hunk"] == finding["hunk_id"]
        deletion = diagnostics[1]
        assert deletion.range.start == deletion.range.end and deletion.range.start.character == 0
        assert diagnostics[0].range.start.character == 8  # the print's indentation
        assert diagnostics[0].range.end.character == len("        print('debug', value)")
    finally:
        path.write_text(PARITY)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                types.TextDocumentIdentifier(uri=_uri(repo, "parity.py"))
            )
        )


async def _comments_done(client, timeout: float = 120.0) -> None:
    """Wait until the model is idle twice in a row after the comments' quiet period."""
    await asyncio.sleep(0.7)
    deadline = asyncio.get_running_loop().time() + timeout
    idle = 0
    while idle < 2:
        answer = await status(client)
        idle = idle + 1 if not answer["busy"] and answer["queue"] == 0 else 0
        assert asyncio.get_running_loop().time() < deadline, "comments never finished"
        await asyncio.sleep(0.2)


async def test_a_pure_deletion_is_flagged_where_the_lines_were(client, repo: GitRepo) -> None:
    uri = _uri(repo, "other.py")
    open_document(client, uri, OTHER)
    start, end = OTHER.index("line 6\n"), OTHER.index("line 8\n")
    replace(client, uri, 2, OTHER, start, end, "")
    (diagnostic,) = (await published(client, uri, 2)).diagnostics
    assert diagnostic.range == types.Range(types.Position(5, 0), types.Position(5, 0))


async def test_a_deletion_at_the_end_is_flagged_on_the_line_the_cli_reports(
    client, repo: GitRepo
) -> None:
    uri = _uri(repo, "tail.py")
    open_document(client, uri, TAIL)
    start = TAIL.index("row 14\n")
    text = replace(client, uri, 2, TAIL, start, len(TAIL), "")
    (diagnostic,) = (await published(client, uri, 2)).diagnostics
    # The same change on disk, as `hunkwise review` reads it from git.
    repo.write("tail.py", text)
    try:
        (hunk,) = [h for h in hunks_for(repo.path).hunks if h.path == "tail.py"]
    finally:
        repo.write("tail.py", TAIL)
    line = finding_lines(hunk)[0]
    assert line == 13  # the last line left, where the deleted ones followed
    point = types.Position(line - 1, 0)
    assert diagnostic.range == types.Range(point, point)


async def test_lockfiles_and_vendored_code_are_not_scored(client, repo: GitRepo) -> None:
    # Threshold 0 flags every hunk that is scored: these get no review at all.
    for name, text, what in (
        ("poetry.lock", LOCK, "a lockfile"),
        ("vendor/x.py", LIB, "vendored code"),
    ):
        uri = _uri(repo, name)
        open_document(client, uri, text)
        replace(client, uri, 2, text, 0, 0, "print('changed')\n")
        line = f"hunkwise: no review for {uri}: {what} (training skips these too)"
        await wait_until(
            lambda line=line: any(m.message == line for m in client.log_messages), line
        )
        assert not any(p.uri == uri for p in client.published)


async def test_a_threshold_change_republishes(client, repo: GitRepo) -> None:
    edited = await _edit_app(client, repo, "threshold.py")
    uri = edited.uri
    since = len(client.published)
    configure(client, threshold=1.0)
    await published(client, uri, 3, since, check=lambda p: p.diagnostics == [])
    # The pull route: the client answers workspace/configuration with its settings.
    since = len(client.published)
    client.set_configuration({"threshold": 0.0}, section="hunkwise")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    back = await published(client, uri, 3, since, check=lambda p: len(p.diagnostics) == 2)
    assert [d.data["hunk"] for d in back.diagnostics] == [h.id for h in edited.hunks]


async def test_a_burst_of_edits_ends_with_the_last_version_only(client, repo: GitRepo) -> None:
    edited = await _edit_app(client, repo, "burst.py")
    uri = edited.uri
    text, since = edited.text, len(client.published)
    anchor = text.index("    return value + 6") + len("    return value + 6")
    for version in range(4, 54):
        text = replace(client, uri, version, text, anchor, anchor, "1")
        anchor += 1
    final = await published(client, uri, 53, since)
    await asyncio.sleep(0.5)  # let anything still queued arrive: none of it may be older
    ours = [p for p in client.published[since:] if p.uri == uri]
    assert all(p.version == 53 for p in ours[ours.index(final) :])
    hunks = diff_texts(APP, text, "burst.py")
    assert [d.data["hunk"] for d in client.diagnostics[uri]] == [h.id for h in hunks]
    assert [d.range for d in client.diagnostics[uri]] == [_expected_range(h, text) for h in hunks]


async def test_a_file_outside_git_gets_no_review_and_one_log_line(client, tmp_path: Path) -> None:
    outside = tmp_path / "scratch.py"
    outside.write_text("x = 1\n")
    uri = outside.as_uri()
    open_document(client, uri, "x = 1\n")
    replace(client, uri, 2, "x = 1\n", 0, 0, "print(1)\n")
    line = f"hunkwise: no review for {uri}: outside a git repository"
    await wait_until(lambda: any(m.message == line for m in client.log_messages), line)
    await asyncio.sleep(0.3)
    assert [m.message for m in client.log_messages].count(line) == 1
    assert not any(p.uri == uri for p in client.published)


async def test_a_binary_file_gets_no_review(client, repo: GitRepo) -> None:
    uri = _uri(repo, "blob.dat")
    open_document(client, uri, "\x00\x01binary\x00 changed")
    line = f"hunkwise: no review for {uri}: binary"
    await wait_until(lambda: any(m.message == line for m in client.log_messages), line)
    assert not any(p.uri == uri for p in client.published)


_EDIT = st.tuples(
    st.floats(0, 1),
    st.integers(0, 12),
    st.text(alphabet="ab \n=()é😀", max_size=12),
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(_EDIT, min_size=1, max_size=6))
async def test_random_edits_end_with_diagnostics_for_the_final_text(
    client, repo: GitRepo, edits
) -> None:
    uri = _uri(repo, "lib.py")
    since = len(client.published)
    open_document(client, uri, LIB)
    text, version = LIB, 1
    for where, length, new in edits:
        start = int(where * len(text))
        version += 1
        text = replace(client, uri, version, text, start, min(start + length, len(text)), new)
    final = await published(client, uri, version, since)
    hunks = diff_texts(LIB, text, "lib.py")
    assert [d.data["hunk"] for d in final.diagnostics] == [h.id for h in hunks]
    # The server's view of the text is the client's: the ranges fit the final text.
    for diagnostic, hunk in zip(final.diagnostics, hunks, strict=True):
        if hunk.added:
            lines = text.split("\n")
            first, last = hunk.added[0][0] - 1, hunk.added[-1][0] - 1
            code = lines[first]
            indent = len(code) - len(code.lstrip()) if code.strip() else 0  # the CLI's column
            assert diagnostic.range.start == types.Position(first, indent)
            assert diagnostic.range.end.line == last
            assert diagnostic.range.end.character == len(lines[last].encode("utf-16-le")) // 2
        else:
            assert diagnostic.range.start == diagnostic.range.end
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert (await status(client))["state"] == "ready"


async def test_a_corrupt_bundle_is_reported_and_the_server_survives(
    client, repo: GitRepo, tiny_bundle: Path, tmp_path: Path
) -> None:
    edited = await _edit_app(client, repo, "corrupt.py")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_bundle, corrupt)
    weights = corrupt / "rnp" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    configure(client, bundle=str(corrupt))
    await wait_until(
        lambda: any(
            m.type == types.MessageType.Error and "cannot load the bundle" in m.message
            for m in client.messages
        ),
        "the error message",
    )
    answer = await status(client)
    assert answer["state"] == "error" and answer["message"]
    # Back to the good bundle: reviews resume.
    since = len(client.published)
    configure(client, bundle=str(tiny_bundle))
    back = await published(client, edited.uri, 3, since, check=lambda p: len(p.diagnostics) > 0)
    assert back.diagnostics
    assert (await status(client))["state"] == "ready"


async def test_without_a_bundle_one_message_says_how_to_train_one(
    repo: GitRepo, tmp_path: Path
) -> None:
    missing = tmp_path / "no-bundle-here"
    async with session(repo.path, {"bundle": str(missing), "threshold": 0.0}) as client:
        expected = f"hunkwise: no trained bundle at {missing}"
        await wait_until(
            lambda: any(m.message.startswith(expected) for m in client.messages), expected
        )
        uri = _uri(repo, "app.py")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print('x')\n")
        assert (await status(client))["state"] == "no-bundle"
        await execute(client, "hunkwise.reloadBundle")
        await asyncio.sleep(0.3)
        messages = [m.message for m in client.messages if m.message.startswith(expected)]
        assert len(messages) == 1
        assert "hunkwise train-from-repo" in messages[0] and "hunkwise train " in messages[0]
        assert not any(p.diagnostics for p in client.published)
        await client.shutdown_session()
        assert client._server.returncode == 0


async def test_a_bundle_without_an_rnp_adapter_says_so_and_still_edits(
    repo: GitRepo, no_rnp_bundle: Path
) -> None:
    options = {"bundle": str(no_rnp_bundle), "device": "cpu", "maxNewTokens": 6, "debounceMs": 30}
    async with session(repo.path, options) as client:
        expected = "hunkwise: this history has no labelled fixes yet, so hunkwise cannot score"

        def notices() -> list[types.ShowMessageParams]:
            return [m for m in client.messages if m.message.startswith(expected)]

        (notice,) = await wait_until(notices, expected)
        assert notice.type == types.MessageType.Warning
        assert "training skipped it: no train records" in notice.message
        answer = await status(client)
        assert answer["state"] == "ready" and RNP not in answer["adapters"]
        assert answer["message"] == notice.message.removeprefix("hunkwise: ")
        assert answer["threshold"] == 0.5  # no calibration: the default threshold
        uri = _uri(repo, "app.py")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print('debug')\n")
        result = await execute(
            client,
            "hunkwise.editWithInstruction",
            {
                "uri": uri,
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}},
                "instruction": "Remove the debug print.",
            },
        )
        assert result == {"applied": True}
        assert not any(p.uri == uri and p.diagnostics for p in client.published)
        assert not [m for m in client.messages if m.type == types.MessageType.Error]
        await execute(client, "hunkwise.reloadBundle")  # once per load
        assert len(notices()) == 2
        await client.shutdown_session()
        assert client._server.returncode == 0
