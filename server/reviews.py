"""Review scheduling: per-document debounce, diff against the base, one batched RNP pass,
diagnostics published at once and updated as review comments arrive; stale versions
dropped, superseded work cancelled, unchanged hunks answered from the caches. Also the
model-backed edits (refinements, instruction edits), the workspace review, and the
dismissals that outlast a session (training.suppressions)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path

from server.model import ModelState, NoModel, Priority, ResultCache, describe_error
from server.text import LineMap, model_safe
from server.workspace import BaseText, Skipped, comparable_buffer, disk_path
from training.config import excluded
from training.errors import HunkwiseError
from training.evidence import Evidence
from training.hunks import Hunk, diff_texts
from training.review import (
    HEAD_LINES,
    RULE_ID,
    TOOL_NAME,
    FileChange,
    Reviewable,
    Skip,
    finding_text,
    is_flagged,
    path_skip,
    reviewable,
)
from training.suppressions import DismissalStore
from training.tasks import RCG, RNP

if TYPE_CHECKING:
    from server.server import HunkwiseServer

log = logging.getLogger(__name__)

#: Hunks scored per model job: small enough that a newer version is not kept waiting.
SCORE_CHUNK = 32
_EXCLUDED = "excluded by hunkwise.exclude"
#: Comments start once a document has had no change for this long.
COMMENT_QUIET_SECONDS = 0.5
#: How long a pull request may wait for a review before it is answered as it stands.
PULL_WAIT_SECONDS = 60.0


@dataclass
class ReviewedHunk:
    """One hunk of a review, its P(review needed), where it is, its comment ("" when the
    bundle has no comment model or the model said nothing) and its evidence (the past
    fixed changes most like it), both fetched after the score."""

    hunk: Hunk
    probability: float
    range: types.Range
    comment: str | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass
class Review:
    """The result for one version of one document."""

    uri: str
    version: int | None
    lines: LineMap
    base: BaseText
    bundle: str
    hunks: list[ReviewedHunk]

    def find(self, hunk_id: str) -> ReviewedHunk | None:
        return next((item for item in self.hunks if item.hunk.id == hunk_id), None)


class StoredDismissals:
    """One repository's dismissal store as the server last read it: read again when the
    file changes (``hunkwise dismiss`` or another editor wrote it). Git thread only."""

    def __init__(self, store: DismissalStore) -> None:
        self.store = store
        self.ids: frozenset[str] = frozenset()
        self._stamp: tuple[int, int] | None = None

    def current(self) -> frozenset[str]:
        try:
            found = self.store.path.stat()
            stamp = (found.st_mtime_ns, found.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self.ids, self._stamp = self.store.ids(), stamp
        return self.ids


@dataclass
class DocumentState:
    """What the server knows about one document (open in the editor, or reviewed from
    disk by ``hunkwise.reviewWorkspace``)."""

    uri: str
    path: Path | None
    is_open: bool = True
    generation: int = 0
    review: Review | None = None
    published: list[types.Diagnostic] | None = None
    published_version: int | None = None
    result_id: str = "0"
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task | None = None
    disk_text: str | None = None
    #: what the review filters left out of its latest review (training.review.reviewable)
    skipped: tuple[Skip, ...] = ()
    #: why its latest review has no result (skipped, or nothing to score with), or None
    unreviewed: str | None = None
    #: event-loop time of the last didChange (comments wait for a pause after it)
    changed_at: float = float("-inf")
    #: changed since its latest review: the comments that review wanted are not wanted now
    edited: bool = False
    #: set once the RNP result for the latest generation is published (or skipped)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: set once its comments are in too
    complete: asyncio.Event = field(default_factory=asyncio.Event)


class Reviewer:
    """All review state of one server; every method runs on the event loop."""

    def __init__(self, ls: HunkwiseServer) -> None:
        self.ls = ls
        self.scores = ResultCache()
        self.comments = ResultCache()
        self.evidence = ResultCache()
        #: hunk ids dismissed in this session (also written to their repository's store)
        self.dismissed: set[str] = set()
        self._docs: dict[str, DocumentState] = {}
        self._git = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hunkwise-git")
        #: the dismissal stores by repository root, loaded by the first review there
        self._stores: dict[Path, StoredDismissals] = {}
        # Writes of the stores: on a thread of their own, so a queued review never delays
        # one and a shutdown, which drops the git thread's queue, waits for them.
        self._store_writes = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hunkwise-dismissals"
        )
        self._result_ids = itertools.count(1)
        self._comment_jobs: dict[tuple[str, str, int], asyncio.Future] = {}
        self._wanted_comments: frozenset[str] = frozenset()
        self._refinements: OrderedDict[tuple, asyncio.Future] = OrderedDict()
        self._logged: set[tuple[str, str]] = set()
        self._reported: set[str] = set()
        self._refresh_pending = False

    # -- document lifecycle ------------------------------------------------------------

    def opened(self, uri: str) -> None:
        state = self._docs.get(uri)
        if state is None:
            state = self._docs[uri] = DocumentState(uri, disk_path(uri))
        elif not state.is_open and self.ls.pull_diagnostics:
            self._push(uri, [], None)  # pulled from now on: clear what was pushed for it
        state.is_open = True
        state.disk_text = None
        self.schedule(state, 0.0)

    def changed(self, uri: str) -> None:
        state = self._docs.get(uri)
        if state is not None:
            state.changed_at = asyncio.get_running_loop().time()
            self.schedule(state, self.ls.settings.debounce_ms / 1000)
            if not state.edited:  # a generation only this version wanted stops now
                state.edited = True
                self._update_wanted_comments()

    def saved(self, uri: str) -> None:
        state = self._docs.get(uri)
        if state is not None:
            self.schedule(state, 0.0)

    def closed(self, uri: str) -> None:
        state = self._docs.pop(uri, None)
        if state is None:
            return
        self._cancel(state)
        if state.published and not (state.is_open and self.ls.pull_diagnostics):
            self._push(uri, [], None)  # pushed (not open, or a push client): take them back
        self._update_wanted_comments()

    def review_all(self) -> None:
        """Review every open document again now (settings or bundle changed)."""
        for state in list(self._docs.values()):
            if state.is_open:
                self.schedule(state, 0.0)

    def schedule(self, state: DocumentState, delay: float) -> None:
        """Start a review of ``state`` after ``delay`` seconds, superseding any other."""
        self._cancel(state)
        state.generation += 1
        generation = state.generation
        # Wake whoever waits on the superseded generation; they wait again on the new one.
        state.settled.set()
        state.complete.set()
        state.settled, state.complete = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(delay, self._start, state, generation)

    def _cancel(self, state: DocumentState) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if state.task is not None and not state.task.done():
            state.task.cancel()

    def _start(self, state: DocumentState, generation: int) -> None:
        state.timer = None
        if generation == state.generation:
            state.task = asyncio.ensure_future(self._review_guarded(state, generation))

    async def _review_guarded(self, state: DocumentState, generation: int) -> None:
        try:
            await self._review(state, generation)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not take the server down
            log.exception("review of %s failed", state.uri)
            self.report(f"hunkwise: reviewing {state.uri} failed: {describe_error(error)}")
        finally:
            if generation == state.generation:
                state.settled.set()
                state.complete.set()

    # -- the review pipeline -----------------------------------------------------------

    def _source(self, state: DocumentState) -> tuple[str, int | None]:
        if state.is_open:
            document = self.ls.workspace.get_text_document(state.uri)
            return document.source, document.version
        return state.disk_text or "", None

    async def _review(self, state: DocumentState, generation: int) -> None:
        settings = self.ls.settings
        if state.path is None:
            self._skip(state, Skipped("not a file on disk"))
            return
        text, version = self._source(state)
        target, hunks, skipped = await self._in_git_thread(
            self._base_and_hunks, state.path, text, frozenset(self.dismissed)
        )
        if generation != state.generation:
            return
        state.skipped = skipped
        if isinstance(target, BaseText):
            self._report_store_problem(target.repo_root)
        if isinstance(target, Skipped):
            self._skip(state, target, quiet=target.reason == _EXCLUDED)
            return
        host = self.ls.host
        if host.state in (ModelState.NO_BUNDLE, ModelState.ERROR) or self.ls.unscored:
            # Nothing to score with (said once, at the load).
            self._set_review(state, None, self.ls.unscored or host.message or "no bundle")
            return
        try:
            probabilities = await self._score(hunks, lambda: generation != state.generation)
        except NoModel as error:
            self._set_review(state, None, str(error) or "no bundle is loaded")
            return
        except Exception as error:
            self.report_model_error(error)
            return
        if generation != state.generation:
            return
        lines = LineMap(text, self.ls.workspace.position_codec)
        review = Review(
            uri=state.uri,
            version=version,
            lines=lines,
            base=target,
            bundle=str(self.ls.host.bundle or ""),
            hunks=[
                ReviewedHunk(hunk, probabilities[hunk.id], lines.hunk_range(hunk)) for hunk in hunks
            ],
        )
        self._fill_cached_comments(review)
        self._set_review(state, review)
        state.settled.set()
        if settings.comments:
            # A change stops a generation between tokens, and what it generated is lost:
            # while the user is typing, start comments only once they pause.
            quiet = COMMENT_QUIET_SECONDS - (asyncio.get_running_loop().time() - state.changed_at)
            if quiet > 0:
                await asyncio.sleep(quiet)
            await self._comment(state, review, generation)

    def _base_and_hunks(
        self, path: Path, text: str, dismissed: frozenset[str] = frozenset()
    ) -> tuple[BaseText | Skipped, list[Hunk], tuple[Skip, ...]]:
        """On the git thread: the base version of ``path``, the hunks of ``text`` the review
        filters keep (those ``hunkwise review`` would score: ``hunkwise: ignore`` comments
        and the repository's stored dismissals applied), and what they left out;
        ``dismissed``: the hunks dismissed in this session."""
        settings = self.ls.settings
        target = self.ls.repos.base_for(path, settings.diff_base, settings.uses_index, text)
        if isinstance(target, Skipped):
            return target, [], ()
        if excluded(target.relpath, settings.exclude):
            return Skipped(_EXCLUDED), [], ()
        skip = path_skip(target.relpath)
        if skip is not None:  # no diff needed to know
            return Skipped(skip.description), [], (skip,)
        # The one road from a buffer to the model: what a tokenizer cannot take goes here.
        base = model_safe(target.text)
        buffer = model_safe(comparable_buffer(target.text, text))
        hunks = diff_texts(base, buffer, target.relpath)
        lines = tuple(buffer.split("\n"))
        change = FileChange(target.relpath, tuple(hunks), lines[:HEAD_LINES], new_lines=lines)
        selection = reviewable([change])
        whole_file = [skip for skip in selection.skipped if skip.hunk is None]
        if whole_file:
            return Skipped(whole_file[0].description), [], tuple(selection.skipped)
        selection = selection.dismissing(self._stored(target.repo_root).current() | dismissed)
        return target, selection.hunks, tuple(selection.skipped)

    def _stored(self, root: Path) -> StoredDismissals:
        """The dismissal store of the repository at ``root`` (git thread)."""
        stored = self._stores.get(root)
        if stored is None:
            stored = self._stores[root] = StoredDismissals(DismissalStore.for_repo(root))
        return stored

    def _report_store_problem(self, root: Path) -> None:
        stored = self._stores.get(root)
        problem = stored.store.problem if stored is not None else None
        if problem is not None:
            self.report(f"hunkwise: {problem}")

    async def _in_git_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._git, function, *args)

    async def _score(self, hunks: Sequence[Hunk], is_stale: Callable[[], bool]) -> dict[str, float]:
        """P(review needed) by hunk id: from the cache, the rest in batched model jobs."""
        host = self.ls.host
        found: dict[str, float] = {}
        missing: dict[str, Hunk] = {}
        for hunk in hunks:
            cached = self.scores.get((hunk.id, host.bundle_key))
            if cached is None:
                missing.setdefault(hunk.id, hunk)
            else:
                found[hunk.id] = cached
        todo = list(missing.values())
        if not todo:
            return found
        scores = self.scores

        def job(chunk: list[Hunk]) -> Callable[[Any], dict[str, float]]:
            def run(engine: Any) -> dict[str, float]:
                if not engine.has_task(RNP):  # a review that raced the load's notice
                    raise NoModel("the bundle has no rnp adapter")
                values = engine.score(chunk)
                key = host.bundle_key
                for hunk, value in zip(chunk, values, strict=True):
                    scores.put((hunk.id, key), float(value))
                return {hunk.id: float(value) for hunk, value in zip(chunk, values, strict=True)}

            return run

        futures = [
            host.submit(job(todo[i : i + SCORE_CHUNK]), Priority.SCORE, is_stale)
            for i in range(0, len(todo), SCORE_CHUNK)
        ]
        try:
            for result in await asyncio.gather(*futures):
                found.update(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return found

    def _fill_cached_comments(self, review: Review) -> None:
        key = self._comment_key_suffix()
        for item in review.hunks:
            if item.comment is None:
                item.comment = self.comments.peek((item.hunk.id, *key))
                item.evidence = self.evidence.peek((item.hunk.id, *key)) or ()

    def _comment_key_suffix(self) -> tuple[str, int]:
        return self.ls.host.bundle_key, self.ls.settings.max_new_tokens

    async def _comment(self, state: DocumentState, review: Review, generation: int) -> None:
        """Comments for the flagged hunks still without one, shared with other reviews
        that want the same hunk; the diagnostics are updated as each batch arrives."""
        suffix = self._comment_key_suffix()
        wanted = [item for item in review.hunks if self._flagged(item) and item.comment is None]
        for item in wanted:
            cached = self.comments.get((item.hunk.id, *suffix))
            if cached is not None:
                item.comment = cached
                item.evidence = self.evidence.peek((item.hunk.id, *suffix)) or ()
        todo: dict[str, Hunk] = {}
        futures: set[asyncio.Future] = set()
        for item in wanted:
            if item.comment is not None:
                continue
            running = self._comment_jobs.get((item.hunk.id, *suffix))
            if running is not None:
                futures.add(running)
            else:
                todo.setdefault(item.hunk.id, item.hunk)
        if any(item.comment is not None for item in wanted):
            self._publish(state)
        hunks = list(todo.values())
        batch = max(1, getattr(self.ls.host.engine, "batch_size", 8) or 8)
        for start in range(0, len(hunks), batch):
            futures.add(self._submit_comments(hunks[start : start + batch], suffix))
        for next_done in asyncio.as_completed([_outcome(future) for future in futures]):
            try:
                comments: dict[str, tuple[str, tuple[Evidence, ...]]] = await next_done
            except NoModel:
                return
            except Exception as error:
                self.report_model_error(error)
                continue
            if generation != state.generation or state.review is not review:
                return
            changed = False
            for item in review.hunks:
                found = comments.get(item.hunk.id)
                if found is not None and item.comment is None:
                    item.comment, item.evidence = found
                    changed = True
            if changed:
                self._publish(state)

    def _submit_comments(self, hunks: list[Hunk], suffix: tuple[str, int]) -> asyncio.Future:
        ids = frozenset(hunk.id for hunk in hunks)
        comments = self.comments

        evidence = self.evidence

        host = self.ls.host

        def run(engine: Any) -> dict[str, tuple[str, tuple[Evidence, ...]]]:
            # No comments learnt: "", and the message is the evidence's or the probability's.
            texts = (
                engine.comment(hunks, should_stop=host.should_stop)
                if engine.has_task(RCG)
                else [""] * len(hunks)
            )
            found = engine.evidence(hunks)
            key = (self.ls.host.bundle_key, suffix[1])
            out = {}
            for hunk, text, past in zip(hunks, texts, found, strict=True):
                out[hunk.id] = (text.strip(), tuple(past))
                comments.put((hunk.id, *key), out[hunk.id][0])
                evidence.put((hunk.id, *key), out[hunk.id][1])
            return out

        # Interruptible: the next version's scores, a refinement or an edit stop it between
        # tokens (it runs again after them if its hunks are still wanted).
        future = host.submit(
            run,
            Priority.COMMENT,
            lambda: not (ids & self._wanted_comments),
            interruptible=True,
        )
        keys = [(hunk.id, *suffix) for hunk in hunks]
        for key in keys:
            self._comment_jobs[key] = future

        def forget(_: asyncio.Future) -> None:
            for key in keys:
                if self._comment_jobs.get(key) is future:
                    del self._comment_jobs[key]

        future.add_done_callback(forget)
        return future

    # -- publishing --------------------------------------------------------------------

    def _flagged(self, item: ReviewedHunk) -> bool:
        threshold = self.ls.threshold
        return (
            threshold is not None
            and is_flagged(item.probability, threshold)
            and item.hunk.id not in self.dismissed
        )

    def _diagnostic(self, item: ReviewedHunk) -> types.Diagnostic:
        settings = self.ls.settings
        comment = item.comment if settings.comments else None
        return types.Diagnostic(
            range=item.range,
            message=finding_text(item.probability, comment, item.evidence),
            severity=settings.diagnostic_severity,
            code=RULE_ID,
            source=TOOL_NAME,
            data={"hunk": item.hunk.id, "p": round(item.probability, 2)},
        )

    def diagnostics(self, state: DocumentState) -> list[types.Diagnostic]:
        if state.review is None:
            return []
        return [self._diagnostic(item) for item in state.review.hunks if self._flagged(item)]

    def _set_review(
        self, state: DocumentState, review: Review | None, unreviewed: str | None = None
    ) -> None:
        state.review, state.unreviewed = review, unreviewed
        state.edited = False
        self._publish(state)
        self._update_wanted_comments()

    def _publish(self, state: DocumentState) -> None:
        diagnostics = self.diagnostics(state)
        version = state.review.version if state.review is not None else None
        if diagnostics == state.published and version == state.published_version:
            return
        if state.review is None and not state.published:
            return  # nothing reviewed, nothing shown: no need to say so
        state.published, state.published_version = diagnostics, version
        state.result_id = str(next(self._result_ids))
        if state.is_open and self.ls.pull_diagnostics:
            self._request_refresh()
        else:
            self._push(state.uri, diagnostics, version)

    def _push(self, uri: str, diagnostics: list[types.Diagnostic], version: int | None) -> None:
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    def _request_refresh(self) -> None:
        """Ask a pulling client to pull again (coalesced to one request per loop turn)."""
        if not self.ls.diagnostic_refresh or self._refresh_pending:
            return
        self._refresh_pending = True

        def send() -> None:
            self._refresh_pending = False
            self.ls.workspace_diagnostic_refresh(None)

        asyncio.get_running_loop().call_soon(send)

    def _skip(self, state: DocumentState, skipped: Skipped, quiet: bool = False) -> None:
        key = (state.uri, skipped.reason)
        if key not in self._logged and not quiet:
            self._logged.add(key)
            self.ls.log(f"hunkwise: no review for {state.uri}: {skipped.reason}")
            if skipped.notify:
                self.report(f"hunkwise: {skipped.reason}; check the `hunkwise.diffBase` setting")
        self._set_review(state, None, skipped.reason)

    def _update_wanted_comments(self) -> None:
        wanted: set[str] = set()
        if self.ls.settings.comments:
            for state in self._docs.values():
                if state.review is not None and not state.edited:
                    wanted.update(
                        item.hunk.id
                        for item in state.review.hunks
                        if self._flagged(item) and item.comment is None
                    )
        self._wanted_comments = frozenset(wanted)

    def report(self, message: str) -> None:
        """Show a problem to the user once (the same text is not shown twice)."""
        if message in self._reported:
            return
        self._reported.add(message)
        self.ls.show(message, types.MessageType.Warning)

    def report_model_error(self, error: BaseException) -> None:
        if isinstance(error, HunkwiseError):
            self.report(f"hunkwise: {error}")
        else:
            self.report(f"hunkwise: the model failed: {describe_error(error)}")

    # -- pull diagnostics --------------------------------------------------------------

    async def pull(
        self, uri: str, previous_result_id: str | None
    ) -> types.DocumentDiagnosticReport:
        state = self._docs.get(uri)
        if state is None:
            return types.RelatedFullDocumentDiagnosticReport(items=[])
        # Without refresh support a later comment could not reach the client: wait for it.
        await self.wait(state, complete=not self.ls.diagnostic_refresh)
        if previous_result_id is not None and previous_result_id == state.result_id:
            return types.RelatedUnchangedDocumentDiagnosticReport(result_id=state.result_id)
        return types.RelatedFullDocumentDiagnosticReport(
            items=list(state.published or []), result_id=state.result_id
        )

    async def wait(self, state: DocumentState, complete: bool = False) -> None:
        """Until the latest generation of ``state`` is published (``complete``: with its
        comments), or PULL_WAIT_SECONDS pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PULL_WAIT_SECONDS
        while True:
            event = state.complete if complete else state.settled
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return
            current = state.complete if complete else state.settled
            if event is current:
                return

    # -- questions about findings ------------------------------------------------------

    def state(self, uri: str) -> DocumentState | None:
        return self._docs.get(uri)

    def flagged_at(self, uri: str, position: types.Position) -> tuple[Review, ReviewedHunk] | None:
        state = self._docs.get(uri)
        if state is None or state.review is None:
            return None
        for item in state.review.hunks:
            if self._flagged(item) and _contains(item.range, position):
                return state.review, item
        return None

    def flagged_in(self, uri: str, selection: types.Range) -> list[ReviewedHunk]:
        state = self._docs.get(uri)
        if state is None or state.review is None:
            return []
        return [
            item
            for item in state.review.hunks
            if self._flagged(item) and _overlaps(item.range, selection)
        ]

    def finding(self, uri: str, hunk_id: str) -> tuple[Review, ReviewedHunk]:
        state = self._docs.get(uri)
        item = state.review.find(hunk_id) if state and state.review else None
        if state is None or state.review is None or item is None:
            raise HunkwiseError(self._no_finding(uri, state))
        return state.review, item

    def _no_finding(self, uri: str, state: DocumentState | None) -> str:
        """Why ``uri`` has no such finding, in the words the user can act on."""
        if disk_path(uri) is None:
            return f"{uri} is not a file on disk: save it to review it"
        if state is None:
            return f"{uri} has no review: open it, or run hunkwise.reviewWorkspace"
        if state.review is None:
            return f"{uri} has no review: {state.unreviewed or 'it is still being reviewed'}"
        return "that review finding is gone (the file changed since); wait for the new review"

    def knows(self, hunk_id: str) -> bool:
        """Whether a review of an open document holds this hunk (flagged or not)."""
        return any(
            state.review is not None and state.review.find(hunk_id) is not None
            for state in self._docs.values()
        )

    def dismiss(self, uri: str, hunk_id: str) -> bool:
        """Hide a finding until its hunk's content changes (its id is a content hash), now
        and in later sessions: the dismissal is written to the repository's store (the one
        ``hunkwise review`` reads) off the event loop."""
        if hunk_id in self.dismissed:
            return False
        self.dismissed.add(hunk_id)
        holders = [
            state
            for state in self._docs.values()
            if state.review is not None and state.review.find(hunk_id) is not None
        ]
        for state in holders:
            self._publish(state)
        self._update_wanted_comments()
        holder = next(
            (state for state in holders if state.uri == uri), holders[0] if holders else None
        )
        if holder is not None and holder.review is not None:
            review = holder.review
            item = review.find(hunk_id)
            path = item.hunk.path if item is not None else None
            self._write_dismissal(review.base.repo_root, hunk_id, path)
        return True

    def _write_dismissal(self, root: Path, hunk_id: str, path: str | None) -> None:
        def write() -> None:
            stored = self._stores.get(root)
            store = stored.store if stored is not None else DismissalStore.for_repo(root)
            store.dismiss(hunk_id, path)

        def done(future: asyncio.Future) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                reason = str(error) if isinstance(error, HunkwiseError) else describe_error(error)
                self.report(f"hunkwise: the dismissal lasts for this session only: {reason}")

        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._store_writes, write).add_done_callback(done)

    # -- model-backed edits ------------------------------------------------------------

    async def refinement(self, uri: str, hunk_id: str) -> types.WorkspaceEdit:
        """The cr adapter's rewrite of a flagged hunk with its review comment, as an edit
        of the version reviewed; computed once per hunk, version and bundle."""
        review, item = self.finding(uri, hunk_id)
        key = (uri, hunk_id, review.version, self.ls.host.bundle_key)
        future = self._refinements.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception())):
            future = asyncio.ensure_future(self._refine(review, item))
            self._refinements[key] = future
            while len(self._refinements) > 64:
                self._refinements.popitem(last=False)
        self._refinements.move_to_end(key)
        return await asyncio.shield(future)

    async def _refine(self, review: Review, item: ReviewedHunk) -> types.WorkspaceEdit:
        comment = item.comment or self.comments.peek((item.hunk.id, *self._comment_key_suffix()))
        host = self.ls.host
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
        return self.ls.workspace_edit(review.uri, review.version, [edit])

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
        host = self.ls.host  # a cancelled request stops the generation between tokens
        output = await host.submit(
            lambda engine: engine.edit([code], [instruction], should_stop=host.should_stop)[0],
            Priority.EDIT,
        )
        if self.ls.workspace.get_text_document(uri).version != version:
            raise HunkwiseError("the document changed while the edit was computed; try again")
        return self.ls.workspace_edit(uri, version, [lines.replace_lines(first, count, output)])

    # -- the whole work tree -----------------------------------------------------------

    async def review_workspace(
        self, roots: list[Path], cancelled: Callable[[], bool], report: Callable[[str, int], None]
    ) -> dict[str, Any]:
        """Review every file that differs from the base in the repositories of ``roots``;
        RNP results are published file by file, comments follow as usual."""
        settings = self.ls.settings
        files: dict[Path, None] = {}
        for root in roots:
            try:
                changed = await self._in_git_thread(
                    self.ls.repos.changed_files, root, settings.diff_base, settings.uses_index
                )
            except LookupError:
                raise HunkwiseError(
                    f"unknown revision {settings.diff_base!r} in {root}; "
                    "check the `hunkwise.diffBase` setting"
                ) from None
            files.update(dict.fromkeys(changed))
        reviewed = flagged = 0
        skipped: list[Skip] = []
        stopped = False
        for index, path in enumerate(files):
            if cancelled():
                stopped = True
                break
            report(path.name, int(100 * index / max(len(files), 1)))
            uri = from_fs_path(str(path)) or path.as_uri()
            state = self._docs.get(uri)
            if state is None or not state.is_open:
                text = await self._in_git_thread(_read_text, path)
                if text is None:  # deleted since it was listed
                    self.ls.log(f"hunkwise: no review for {uri}: no such file on disk any more")
                    self.closed(uri)
                    continue
                if state is None:
                    state = self._docs[uri] = DocumentState(uri, path, is_open=False)
                state.disk_text = text
            self.schedule(state, 0.0)
            await self.wait(state)
            reviewed += 1
            flagged += len(state.published or [])
            skipped.extend(state.skipped)
        return {
            "files": len(files),
            "reviewed": reviewed,
            "flagged": flagged,
            "skipped": Reviewable([], skipped).counts(),
            "cancelled": stopped,
        }

    # -- status and shutdown -----------------------------------------------------------

    @property
    def document_count(self) -> int:
        return sum(1 for state in self._docs.values() if state.is_open)

    def forget_reviews(self) -> None:
        """Drop the refinement cache (the bundle changed)."""
        self._refinements.clear()

    def stop(self) -> None:
        """Cancel every pending and running review (event loop only)."""
        for state in self._docs.values():
            self._cancel(state)

    def close(self) -> None:
        """Stop the git thread, and finish the dismissals still being written (any thread)."""
        self._git.shutdown(wait=False, cancel_futures=True)
        self._store_writes.shutdown(wait=True)


async def _outcome(future: asyncio.Future) -> Any:
    """Await a job another review may share: cancelling the waiter leaves the job alone,
    and a job skipped because nobody wanted it any more yields an empty result."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if future.cancelled():
            return {}
        raise


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it cannot be read (deleted, say)."""
    try:
        with open(path, "rb") as source:
            data = source.read(4_000_001)
    except OSError as error:
        log.info("cannot read %s: %s", path, error)
        return None
    return data.decode("utf-8", errors="replace")


def _contains(area: types.Range, position: types.Position) -> bool:
    # Finding ranges are whole lines (or a point at a line start): compare lines only, so
    # a hover past a line's last character still counts.
    return area.start.line <= position.line <= area.end.line


def _overlaps(area: types.Range, selection: types.Range) -> bool:
    return area.start.line <= selection.end.line and selection.start.line <= area.end.line
