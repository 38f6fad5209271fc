"""Protocol edge cases of the language server, over stdio, with the STAND-IN engine and
trainer of bench/lsp_harness/stand_in_engine.py (fixed rules instead of a model, so answers are
exact and instant): bad settings, pull diagnostics, model errors, a busy model, dismissal,
refinements and instruction edits, workspace review, training runs and their cancellation,
exiting without a shutdown."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from bench.lsp_harness import STAND_IN_SERVER
from bench.lsp_harness.documents import open_document, replace
from bench.lsp_harness.stand_in_engine import COMMENT, write_stand_in_bundle
from tests.gitrepo import GitRepo
from tests.lsp_session import execute, published, session, status, vscode_capabilities, wait_until
from tests.processes import alive

#: A commented finding's diagnostic, as `hunkwise review` prints it (comment, then p).
COMMENTED = f"{COMMENT} (p=0.90)"

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "".join(f"value_{n} = {n}\n" for n in range(1, 21))


def _repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.commit("Add app", app_dot_py=APP, notes_dot_md="# Notes\n")
    return repo


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


async def _state(client, state: str) -> dict:
    for _ in range(1000):
        answer = await status(client)
        if answer["state"] == state:
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError(f"the server never reached state {state!r}: {answer}")


def _hover(client, uri: str, line: int):
    return client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, 2)
        )
    )


# -- one server for the document features ---------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[GitRepo, Path]:
    base = tmp_path_factory.mktemp("stand-in")
    return _repo(base / "repo"), write_stand_in_bundle(base / "bundle")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(workspace, tmp_path_factory):
    repo, bundle = workspace
    env = _env(tmp_path_factory.mktemp("env"))
    async with session(
        repo.path, {"bundle": str(bundle), "debounceMs": 10}, STAND_IN_SERVER, env=env
    ) as client:
        await _state(client, "ready")
        yield client


async def test_an_edit_is_flagged_then_commented(client, workspace) -> None:
    repo, _ = workspace
    uri = (repo.path / "app.py").as_uri()
    open_document(client, uri, APP)
    start = APP.index("value_5")
    text = replace(client, uri, 2, APP, start, start, "print('debug')\n")
    first = await published(client, uri, 2)
    (diagnostic,) = first.diagnostics
    assert diagnostic.message == "This change may need review (p=0.90)"
    assert diagnostic.range == types.Range(types.Position(4, 0), types.Position(4, 14))
    assert (diagnostic.source, diagnostic.code) == ("hunkwise", "review-needed")
    assert diagnostic.severity == types.DiagnosticSeverity.Information
    assert diagnostic.data["p"] == 0.9
    commented = await published(
        client, uri, 2, check=lambda p: p.diagnostics[0].message == COMMENTED
    )
    assert commented.diagnostics[0].data == diagnostic.data
    assert COMMENT in (await _hover(client, uri, 4)).contents.value
    # A hunk without a print scores 0.1: under the threshold, no diagnostic for it.
    end = text.index("value_12")
    replace(client, uri, 3, text, end, end, "extra = 1\n")
    assert len((await published(client, uri, 3)).diagnostics) == 1


async def test_resolve_and_apply_refinement_give_the_refined_hunk(client, workspace) -> None:
    repo, _ = workspace
    uri = (repo.path / "refine.py").as_uri()
    text = "".join(f"line_{n} = {n}\n" for n in range(1, 11))
    open_document(client, uri, text)
    text = replace(client, uri, 2, text, text.index("line_4"), text.index("line_4"), "print(3)\n")
    # refine.py is untracked: all of it is added, one hunk over the whole file.
    (diagnostic,) = (await published(client, uri, 2)).diagnostics
    (refine, _dismiss) = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diagnostic.range,
            context=types.CodeActionContext(
                diagnostics=[diagnostic], only=[types.CodeActionKind.QuickFix]
            ),
        )
    )
    resolved = await client.code_action_resolve_async(refine)
    (change,) = resolved.edit.document_changes
    (edit,) = change.edits
    assert change.text_document.version == 2
    assert edit.range == types.Range(types.Position(0, 0), types.Position(11, 0))
    assert edit.new_text == "".join(f"line_{n} = {n}\n" for n in range(1, 11))
    result = await execute(
        client, "hunkwise.applyRefinement", {"uri": uri, "hunk": refine.data["hunk"]}
    )
    assert result == {"applied": True}
    assert client.edits[-1].edit == resolved.edit


async def test_an_instruction_edit_replaces_the_selected_lines(client, workspace) -> None:
    repo, _ = workspace
    uri = (repo.path / "app.py").as_uri()
    text = "first = 1\nsecond = 2\nthird = 3"
    edit_uri = uri.replace("app.py", "edit.py")
    open_document(client, edit_uri, text)
    selection = {"start": {"line": 1, "character": 3}, "end": {"line": 2, "character": 2}}
    result = await execute(
        client,
        "hunkwise.editWithInstruction",
        {"uri": edit_uri, "range": selection, "instruction": "Shout."},
    )
    assert result == {"applied": True}
    (change,) = client.edits[-1].edit.document_changes
    # Whole lines, to the end of the text, which has no final newline: none is added.
    assert change.edits[0].range == types.Range(types.Position(1, 0), types.Position(2, 9))
    assert change.edits[0].new_text == "SECOND = 2\nTHIRD = 3"
    missing = await execute(
        client, "hunkwise.editWithInstruction", {"uri": edit_uri, "range": selection}
    )
    assert missing == {"applied": False, "reason": "no instruction"}


async def test_dismiss_hides_a_finding_until_its_hunk_changes(client, workspace) -> None:
    repo, _ = workspace
    uri = (repo.path / "dismiss.py").as_uri()
    open_document(client, uri, "x = 1\n")
    text = replace(client, uri, 2, "x = 1\n", 0, 0, "print(1)\n")
    (diagnostic,) = (await published(client, uri, 2)).diagnostics
    since = len(client.published)
    hunk = diagnostic.data["hunk"]
    unknown = await execute(client, "hunkwise.dismiss", {"uri": uri, "hunk": "f" * 32})
    assert unknown == {"dismissed": False, "reason": f"no finding of hunk {'f' * 32!r} to dismiss"}
    assert await execute(client, "hunkwise.dismiss", {"uri": uri, "hunk": hunk}) == {
        "dismissed": True
    }
    await published(client, uri, 2, since, check=lambda p: p.diagnostics == [])
    replace(client, uri, 3, text, 0, 0, "print(0)\n")
    (again,) = (await published(client, uri, 3)).diagnostics
    assert again.data["hunk"] != hunk


async def test_a_model_error_is_reported_and_the_server_survives(client, workspace) -> None:
    repo, _ = workspace
    uri = (repo.path / "oom.py").as_uri()
    open_document(client, uri, "")
    text = replace(client, uri, 2, "", 0, 0, "oops = 'OOM!'\n")
    await wait_until(
        lambda: any("ran out of memory" in m.message for m in client.messages), "the report"
    )
    replace(client, uri, 3, text, 0, len(text), "print(2)\n")
    (diagnostic,) = (await published(client, uri, 3)).diagnostics
    assert diagnostic.data["p"] == 0.9
    assert (await status(client))["state"] == "ready"


# -- servers of their own ------------------------------------------------------------------


async def test_bad_settings_are_named_and_their_defaults_used(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    options = {
        "bundle": str(bundle),
        "threshold": "high",
        "severity": "loud",
        "debounceMs": -5,
        "somethingElse": 1,
    }
    uri = (repo.path / "app.py").as_uri()
    # A client without codeAction/resolve gets the refinement as a command instead.
    capabilities = vscode_capabilities()
    capabilities.text_document.code_action.resolve_support = None
    async with session(repo.path, options, STAND_IN_SERVER, capabilities, _env(tmp_path)) as client:
        await _state(client, "ready")
        shown = [m.message for m in client.messages]
        expected = (
            ("threshold", "the bundle's threshold"),
            ("severity", '"information"'),
            ("debounceMs", "300"),
        )
        for key, default in expected:
            assert any(f"`hunkwise.{key}`" in m and f"default, {default}" in m for m in shown)
        assert not any("somethingElse" in m for m in shown)
        open_document(client, uri, APP)
        text = replace(client, uri, 2, APP, 0, 0, "print(1)\n")
        start = text.index("value_15")
        replace(client, uri, 3, text, start, start, "other = 2\n")
        (flagged,) = (await published(client, uri, 3)).diagnostics  # 0.9 >= 0.5 > 0.1
        assert (await status(client))["threshold"] == 0.5  # the stand-in bundle's
        assert flagged.severity == types.DiagnosticSeverity.Information
        (refine, _) = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=flagged.range,
                context=types.CodeActionContext(
                    diagnostics=[flagged], only=[types.CodeActionKind.QuickFix]
                ),
            )
        )
        assert refine.command.command == "hunkwise.applyRefinement" and refine.data is None
        # workspace/configuration answers override initializationOptions.
        since = len(client.published)
        client.set_configuration({"threshold": 0.05, "severity": "warning"}, section="hunkwise")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        both = await published(client, uri, 3, since, check=lambda p: len(p.diagnostics) == 2)
        assert {d.severity for d in both.diagnostics} == {types.DiagnosticSeverity.Warning}


async def test_pull_clients_get_result_ids_unchanged_reports_and_refreshes(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    uri = (repo.path / "app.py").as_uri()
    options = {"bundle": str(bundle), "debounceMs": 10}
    capabilities = vscode_capabilities(pull=True)
    async with session(repo.path, options, STAND_IN_SERVER, capabilities, _env(tmp_path)) as client:
        # Once the bundle is loaded: a pull during loading is answered empty and refreshed.
        await _state(client, "ready")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print(1)\n")

        async def pull(previous: str | None):
            return await client.text_document_diagnostic_async(
                types.DocumentDiagnosticParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    previous_result_id=previous,
                )
            )

        first = await pull(None)  # answered once the review of version 2 is in
        assert first.kind == "full" and first.result_id and len(first.items) == 1
        await wait_until(lambda: client.diagnostic_refresh_count > 0, "a refresh request")
        second = await pull(first.result_id)
        if second.kind == "full":  # the comment arrived after the first answer
            assert second.items[0].message == COMMENTED and second.result_id != first.result_id
        third = await pull(second.result_id)
        assert third.kind == "unchanged" and third.result_id == second.result_id
        assert not [p for p in client.published if p.uri == uri]  # nothing pushed


async def test_hover_is_answered_while_the_model_is_busy(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle", delay=0.5)
    uri = (repo.path / "app.py").as_uri()
    options = {"bundle": str(bundle), "debounceMs": 10}
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
        await _state(client, "ready")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print(1)\n")
        await published(client, uri, 2, check=lambda p: bool(p.diagnostics))
        # The comment job keeps the model busy for the next 0.5 s; the hover does not wait.
        assert "Review comment pending" in (await _hover(client, uri, 0)).contents.value


async def test_hover_says_when_the_bundle_has_no_comment_model(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle", tasks=("rnp", "cr", "edit"))
    uri = (repo.path / "app.py").as_uri()
    options = {"bundle": str(bundle), "debounceMs": 10}
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
        await _state(client, "ready")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print(1)\n")
        (diagnostic,) = (
            await published(client, uri, 2, check=lambda p: bool(p.diagnostics))
        ).diagnostics
        assert diagnostic.message.startswith("This change may need review (p=0.90)")
        hover = (await _hover(client, uri, 0)).contents.value
        assert "No comment model in this bundle" in hover and "pending" not in hover
        # Then history's evidence arrives and its fix subject stands in for the comment.
        (diagnostic,) = (
            await published(
                client, uri, 2, check=lambda p: p.diagnostics[0].message.startswith("From")
            )
        ).diagnostics
        assert diagnostic.message == (
            "From history: Drop the leftover print in port() (fixed by 9b7e0d1 in a change "
            "like this, p=0.90)"
        )
        hover = (await _hover(client, uri, 0)).contents.value
        assert "No comment model in this bundle" in hover
        assert "From history: Drop the leftover print in port() (fixed by 9b7e0d1" in hover


async def test_the_hover_cites_the_evidence_newest_first(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    uri = (repo.path / "app.py").as_uri()
    options = {"bundle": str(bundle), "debounceMs": 10}
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(tmp_path)) as client:
        await _state(client, "ready")
        open_document(client, uri, APP)
        replace(client, uri, 2, APP, 0, 0, "print(1)\n")
        await published(client, uri, 2, check=lambda p: p.diagnostics[0].message == COMMENTED)
        hover = (await _hover(client, uri, 0)).contents.value
        assert "Changes like this one were fixed later (newest first):\n\n- a change" in hover
        assert (
            "- a change like this in net/util.py (def port(value):) (3f2a1c0, 2024-01-03, "
            "similarity 0.61) was fixed by 9b7e0d1 (2024-01-09): Drop the leftover print in "
            "port()"
        ) in hover


async def test_review_workspace_reviews_changed_and_untracked_files(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    repo.write("app.py", "print('on disk')\n" + APP)
    repo.write("new.py", "print('new')\n")
    repo.write(".gitignore", "build/\n")
    repo.write("build/out.py", "print('ignored')\n")
    repo.write("poetry.lock", "print('a lockfile: not reviewed, as training skips it')\n")
    index_before = (repo.path / ".git" / "index").read_bytes()
    async with session(
        repo.path, {"bundle": str(bundle)}, STAND_IN_SERVER, env=_env(tmp_path)
    ) as client:
        await _state(client, "ready")
        result = await execute(client, "hunkwise.reviewWorkspace")
        assert result == {
            "files": 4,
            "reviewed": 4,
            "flagged": 2,
            "skipped": {"lockfile": 1},
            "cancelled": False,
        }
        flagged = {p.uri for p in client.published if p.diagnostics}
        assert flagged == {(repo.path / "app.py").as_uri(), (repo.path / "new.py").as_uri()}
        ends = [r for rs in client.progress_reports.values() for r in rs if r.kind == "end"]
        assert any(r.message == "4 files, 2 findings" for r in ends)
    assert (repo.path / ".git" / "index").read_bytes() == index_before  # nothing written


async def test_exit_without_shutdown_exits_with_status_1(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    async with session(repo.path, {}, STAND_IN_SERVER, env=_env(tmp_path)) as client:
        client.exit(None)
        await asyncio.wait_for(client._server.wait(), 20)
        assert client._server.returncode == 1


# -- training runs -------------------------------------------------------------------------


async def test_training_runs_reloads_and_cancels_cleanly(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    control = tmp_path / "control.json"
    pid_file = tmp_path / "trainer.pid"
    control.write_text(json.dumps({"steps": 4}))
    env = _env(tmp_path, HUNKWISE_STAND_IN_CONTROL=str(control))
    async with session(repo.path, {}, STAND_IN_SERVER, env=env) as client:
        await _state(client, "no-bundle")
        result = await execute(client, "hunkwise.trainFromRepo", {"tasks": ["rnp", "rcg"]})
        assert result["trained"] is True and result["state"] == "ready"
        bundle = Path(result["bundle"])
        assert bundle.parent == tmp_path / "cache" / "hunkwise"
        manifest = (bundle / "manifest.json").read_bytes()
        # The trainer's JSON progress as messages and a percentage that only rises.
        (reports,) = [
            [r for r in rs if isinstance(r, types.WorkDoneProgressReport)]
            for rs in client.progress_reports.values()
            if any((getattr(r, "message", "") or "").startswith("rnp, ") for r in rs)
        ]
        assert any((r.message or "").startswith("mining ") for r in reports)  # a stderr line
        steps = [r for r in reports if (r.message or "").startswith("rnp, ")]
        assert [r.message.split(",")[1].strip() for r in steps] == [
            "0/4",
            "1/4",
            "2/4",
            "3/4",
            "4/4",
        ]
        assert "loss 0.25" in steps[-1].message
        percentages = [r.percentage for r in reports if r.percentage is not None]
        assert percentages == sorted(percentages) and percentages[-1] == 100
        assert steps[0].percentage == 10 and steps[-1].percentage == 100
        assert (await status(client))["bundle"] == str(bundle)

        # Two more runs, stopped midway: by the progress's cancel button, then by
        # $/cancelRequest. Each time the trainer stops and the bundle stays as it was.
        control.write_text(json.dumps({"steps": 400, "seconds": 0.05, "pid_file": str(pid_file)}))
        for way in ("progress", "request"):
            pid_file.unlink(missing_ok=True)
            since = set(client.progress_reports)
            msg_id = f"train-{way}"
            request = asyncio.ensure_future(
                client.protocol.send_request_async(
                    types.WORKSPACE_EXECUTE_COMMAND,
                    types.ExecuteCommandParams(command="hunkwise.trainFromRepo", arguments=[{}]),
                    msg_id=msg_id,
                )
            )
            await wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the trainer")
            pid = int(pid_file.read_text())

            def training_token(since=since):
                for token, values in client.progress_reports.items():
                    if token not in since and any("rnp, " in (v.message or "") for v in values):
                        return token
                return None

            token = await wait_until(training_token, "training progress")
            if way == "progress":
                client.window_work_done_progress_cancel(
                    types.WorkDoneProgressCancelParams(token=token)
                )
                assert await request == {"trained": False, "cancelled": True}
            else:
                client.cancel_request(types.CancelParams(id=msg_id))
                with pytest.raises(JsonRpcRequestCancelled):
                    await request
            await wait_until(lambda pid=pid: not alive(pid), "the trainer to stop", 20)
            cache = bundle.parent
            await wait_until(lambda c=cache: len(list(c.iterdir())) == 1, "its temp dir to go", 20)
            assert (bundle / "manifest.json").read_bytes() == manifest
        assert (await status(client))["state"] == "ready"

        # The editor goes away (stdin closed, no shutdown) during a run: the trainer stops.
        pid_file.unlink()
        unanswered = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.WORKSPACE_EXECUTE_COMMAND,
                types.ExecuteCommandParams(command="hunkwise.trainFromRepo", arguments=[{}]),
            )
        )
        await wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the trainer")
        pid = int(pid_file.read_text())
        client._server.stdin.close()
        assert await asyncio.wait_for(client._server.wait(), 30) == 1
        assert not alive(pid)
        assert (bundle / "manifest.json").read_bytes() == manifest
        unanswered.cancel()
