"""Model-backed edits: the code actions on a finding (apply the cr adapter's refinement,
dismiss) and on a selection (edit it following an instruction), their
``codeAction/resolve``, and the commands that compute such an edit and send it to the
client (``hunkwise.applyRefinement``, ``hunkwise.editWithInstruction``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from server.arguments import object_argument, range_json, range_of
from server.caching import LruCache
from server.client import Client
from server.configuration import Configuration
from server.features import command, feature
from server.findings import Review, ReviewedHunk
from server.model import ModelHost, NoModel, Priority, describe_error
from server.reviews import Reviewer
from server.text import LineMap, model_safe
from server.workspace import disk_path
from training.errors import HunkwiseError
from training.tasks import RULE_ID, TOOL_NAME

#: Refinements kept (by document, hunk, version and bundle): VS Code resolves a code action
#: each time the user hovers it in the lightbulb menu.
REFINEMENTS_KEPT = 64


class ModelEdits:
    """Edits the adapters compute, offered as code actions and applied by commands."""

    def __init__(
        self,
        client: Client,
        configuration: Configuration,
        host: ModelHost,
        reviewer: Reviewer,
    ) -> None:
        self._client = client
        self._configuration = configuration
        self._host = host
        self._reviewer = reviewer
        self._refinements = LruCache(REFINEMENTS_KEPT)

    def forget(self) -> None:
        """Drop the refinements computed so far (the bundle changed)."""
        self._refinements.clear()

    # -- the code actions --------------------------------------------------------------

    @feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite],
            resolve_provider=True,
        ),
    )
    def code_action(self, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        uri = params.text_document.uri
        only = params.context.only
        actions: list[types.CodeAction] = []
        state = self._reviewer.scheduler.get(uri)
        review = state.review if state is not None else None
        if review is not None and _allowed(types.CodeActionKind.QuickFix, only):
            ours: dict[str, types.Diagnostic | None] = {}
            for diagnostic in params.context.diagnostics:
                data = diagnostic.data
                if (
                    diagnostic.source == TOOL_NAME
                    and diagnostic.code == RULE_ID
                    and isinstance(data, dict)
                ):
                    ours.setdefault(str(data.get("hunk")), diagnostic)
            for item in self._reviewer.flagged_in(uri, params.range):
                ours.setdefault(item.hunk.id, None)
            for hunk_id, diagnostic in ours.items():
                if review.find(hunk_id) is None:
                    continue
                actions.extend(self._finding_actions(uri, hunk_id, review.version, diagnostic))
        selection = params.range
        if selection.start != selection.end and _allowed(
            types.CodeActionKind.RefactorRewrite, only
        ):
            argument = {"uri": uri, "range": range_json(selection)}
            title = "Edit selection with instruction…"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.RefactorRewrite,
                    command=types.Command(
                        title=title, command="hunkwise.editWithInstruction", arguments=[argument]
                    ),
                )
            )
        return actions or None

    def _finding_actions(
        self, uri: str, hunk_id: str, version: int | None, diagnostic: types.Diagnostic | None
    ) -> list[types.CodeAction]:
        diagnostics = [diagnostic] if diagnostic is not None else None
        argument = {"uri": uri, "hunk": hunk_id}
        refine = types.CodeAction(
            title="Apply suggested refinement",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=diagnostics,
            is_preferred=True,
        )
        if self._client.resolves_edits:
            refine.data = {**argument, "version": version}  # the edit comes from the resolve
        else:
            refine.command = types.Command(
                title=refine.title, command="hunkwise.applyRefinement", arguments=[argument]
            )
        dismiss_title = "Dismiss this review finding"
        dismiss = types.CodeAction(
            title=dismiss_title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=diagnostics,
            command=types.Command(
                title=dismiss_title, command="hunkwise.dismiss", arguments=[argument]
            ),
        )
        return [refine, dismiss]

    @feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(self, action: types.CodeAction) -> types.CodeAction:
        data = action.data
        if action.edit is not None or not isinstance(data, dict) or "hunk" not in data:
            return action
        try:
            action.edit = await self.refinement(str(data.get("uri")), str(data["hunk"]))
        except (HunkwiseError, NoModel) as error:
            # Editors resolve on hover of the menu item: log, do not pop up messages.
            self._client.log(f"hunkwise: no refinement: {error}")
        except Exception as error:
            self._reviewer.report_model_error(error)
        return action

    # -- the edits ---------------------------------------------------------------------

    async def refinement(self, uri: str, hunk_id: str) -> types.WorkspaceEdit:
        """The cr adapter's rewrite of a flagged hunk with its review comment, as an edit
        of the version reviewed; computed once per hunk, version and bundle."""
        review, item = self._reviewer.finding(uri, hunk_id)
        key = (uri, hunk_id, review.version, self._host.bundle_key)
        future = self._refinements.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception())):
            future = asyncio.ensure_future(self._refine(review, item))
            self._refinements.put(key, future)
        return await asyncio.shield(future)

    async def _refine(self, review: Review, item: ReviewedHunk) -> types.WorkspaceEdit:
        reviewer, host = self._reviewer, self._host
        comment = item.comment or reviewer.comments.peek((item.hunk.id, *reviewer.comment_key()))
        if not comment:
            hunk = item.hunk
            comment = (
                await host.submit(
                    lambda engine: engine.comment([hunk], should_stop=host.should_stop)[0],
                    Priority.EDIT,
                )
            ).strip()
        first, count, code = review.lines.hunk_code(item.hunk)
        if count == 0:
            raise HunkwiseError("nothing to refine: the hunk only deletes lines")
        # The buffer's own text, not the review's model-safe copy: make it safe too.
        code, comment = model_safe(code), model_safe(comment)
        refined = await host.submit(
            lambda engine: engine.refine([code], [comment], should_stop=host.should_stop)[0],
            Priority.EDIT,
        )
        edit = review.lines.replace_lines(first, count, refined)
        return self._client.workspace_edit(review.uri, review.version, [edit])

    async def instruction_edit(
        self,
        uri: str,
        lines: LineMap,
        version: int | None,
        selection: types.Range,
        instruction: str,
    ) -> types.WorkspaceEdit:
        """The edit adapter's rewrite of the selected lines of ``lines`` (the document at
        ``version``, read once by the caller) following ``instruction``."""
        first, count, code = lines.selected_lines(selection)
        code, instruction = model_safe(code), model_safe(instruction)
        host = self._host  # a cancelled request stops the generation between tokens
        output = await host.submit(
            lambda engine: engine.edit([code], [instruction], should_stop=host.should_stop)[0],
            Priority.EDIT,
        )
        if self._client.document(uri).version != version:
            raise HunkwiseError("the document changed while the edit was computed; try again")
        return self._client.workspace_edit(
            uri, version, [lines.replace_lines(first, count, output)]
        )

    # -- the commands ------------------------------------------------------------------

    @command("hunkwise.editWithInstruction")
    async def edit_with_instruction(self, *args: Any) -> dict[str, Any]:
        argument = object_argument(args, "uri", "range")
        uri = self._workspace_document(argument["uri"])
        selection = range_of(argument["range"])
        instruction = str(argument.get("instruction") or "").strip()
        limit = self._configuration.settings.max_instruction_chars
        if len(instruction) > limit:
            raise JsonRpcInvalidParams(
                f"the instruction has {len(instruction)} characters, over the "
                f"{limit} of `hunkwise.maxInstructionChars`; shorten it or raise the setting"
            )
        document = self._client.document(uri)  # read once: the edit is of this text
        try:
            lines = LineMap(document.source, self._client.position_codec)
        except FileNotFoundError:
            raise JsonRpcInvalidParams(
                f"{uri} is not open and there is no such file on disk (deleted, or never saved)"
            ) from None
        except OSError as error:
            raise JsonRpcInvalidParams(f"cannot read {uri}: {error.strerror or error}") from None
        if not (lines.has_line(selection.start) and lines.has_line(selection.end)):
            raise JsonRpcInvalidParams(
                f"the range reaches line {max(selection.start.line, selection.end.line)}, "
                f"past the end of {uri} ({lines.line_count} lines)"
            )
        if not instruction:
            self._client.show(
                "hunkwise: editWithInstruction needs an instruction "
                '({"uri", "range", "instruction"}); this editor did not ask for one',
                types.MessageType.Info,
            )
            return {"applied": False, "reason": "no instruction"}
        work = self.instruction_edit(uri, lines, document.version, selection, instruction)
        return await self._send(work, "hunkwise: edit with instruction")

    @command("hunkwise.applyRefinement")
    async def apply_refinement(self, *args: Any) -> dict[str, Any]:
        argument = object_argument(args, "uri", "hunk")
        uri = self._workspace_document(argument["uri"])
        work = self.refinement(uri, str(argument["hunk"]))
        return await self._send(work, "hunkwise: apply suggested refinement")

    async def _send(self, work: Awaitable[types.WorkspaceEdit], label: str) -> dict[str, Any]:
        try:
            edit = await work
        except (HunkwiseError, NoModel) as error:
            message = str(error) or "no bundle is loaded"
            self._client.show(f"hunkwise: {message}")
            return {"applied": False, "reason": message}
        except Exception as error:
            self._reviewer.report_model_error(error)
            return {"applied": False, "reason": describe_error(error)}
        return await self._client.apply_edit(edit, label)

    def _workspace_document(self, uri: Any) -> str:
        """``uri`` when a command may act on it: a document the client has open, or a file
        inside a workspace folder; otherwise the request fails saying why."""
        uri = str(uri)
        if self._client.is_open(uri):
            return uri
        path = disk_path(uri)
        if path is None:
            raise JsonRpcInvalidParams(
                f"{uri} is not open and not a file on disk; hunkwise acts only on open "
                "documents and files inside a workspace folder"
            )
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
            raise JsonRpcInvalidParams(f"cannot read {uri}: {error}") from None
        if not any(resolved.is_relative_to(root.resolve()) for root in self._client.roots()):
            raise JsonRpcInvalidParams(
                f"hunkwise acts only on open documents and files inside a workspace folder, "
                f"and {uri} is neither"
            )
        if not resolved.exists():
            raise JsonRpcInvalidParams(
                f"{uri} is not open and there is no such file on disk (deleted, or never saved)"
            )
        return uri


def _allowed(kind: str, only: Sequence[str] | None) -> bool:
    return not only or any(kind == want or kind.startswith(f"{want}.") for want in only)
