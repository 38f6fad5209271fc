"""The review pipeline of open documents: the base version and the hunks of the buffer
(the filters of ``hunkwise review`` applied), one batched RNP pass, then review comments
and evidence for the findings, shared between reviews that want the same hunk; unchanged
hunks answered from the caches. Also the questions the other units ask about findings,
and the review of the whole work tree (``hunkwise.reviewWorkspace``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path

from server.bundles import LoadedBundle
from server.caching import LruCache
from server.client import Client
from server.configuration import Configuration
from server.dismissals import Dismissals
from server.features import feature
from server.findings import FindingRule, Review, ReviewedHunk, contains, overlaps
from server.model import ModelHost, ModelState, NoModel, Priority, describe_error
from server.publishing import Publisher
from server.scheduling import DocumentState, Scheduler
from server.text import LineMap, model_safe
from server.workspace import BaseText, Repositories, Skipped, comparable_buffer, disk_path
from training.config import excluded
from training.errors import HunkwiseError
from training.evidence import Evidence
from training.hunks import Hunk
from training.review import (
    HEAD_LINES,
    FileChange,
    Reviewable,
    Skip,
    path_skip,
    reviewable,
)
from training.tasks import RCG, RNP
from training.xdiff import diff_texts

log = logging.getLogger(__name__)

#: Hunks scored per model job: small enough that a newer version is not kept waiting.
SCORE_CHUNK = 32
_EXCLUDED = "excluded by hunkwise.exclude"
#: Comments start once a document has had no change for this long.
COMMENT_QUIET_SECONDS = 0.5

#: A hunk's comment and evidence, as a comment job returns them by hunk id.
Commented = dict[str, tuple[str, tuple[Evidence, ...]]]


class Reviewer:
    """All review state of one server; every method runs on the event loop."""

    def __init__(
        self,
        client: Client,
        configuration: Configuration,
        host: ModelHost,
        repos: Repositories,
        bundle: LoadedBundle,
    ) -> None:
        self._client = client
        self._configuration = configuration
        self._host = host
        self._repos = repos
        self._bundle = bundle
        self.scores = LruCache()
        self.comments = LruCache()
        self.evidence = LruCache()
        self.scheduler = Scheduler(self._review, self._failed)
        self.dismissals = Dismissals(client, self.scheduler, self._dismissed)
        self.flagged = FindingRule(lambda: bundle.threshold, self.dismissals.ids)
        self.publisher = Publisher(client, self.scheduler, self._settings, self.flagged)
        self._git = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hunkwise-git")
        self._comment_jobs: dict[tuple[str, str, int], asyncio.Future] = {}
        self._wanted_comments: frozenset[str] = frozenset()
        self._logged: set[tuple[str, str]] = set()

    def _settings(self):
        return self._configuration.settings

    # -- document lifecycle ------------------------------------------------------------

    @feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        state = self.scheduler.get(uri)
        if state is None:
            state = self.scheduler.add(DocumentState(uri, disk_path(uri)))
        elif not state.is_open and self._client.pull_diagnostics:
            self.publisher.withdraw(uri)  # pulled from now on: clear what was pushed for it
        state.is_open = True
        state.disk_text = None
        self.scheduler.schedule(state, 0.0)

    @feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        state = self.scheduler.get(params.text_document.uri)
        if state is not None:
            state.changed_at = asyncio.get_running_loop().time()
            self.scheduler.schedule(state, self._settings().debounce_ms / 1000)
            if not state.edited:  # a generation only this version wanted stops now
                state.edited = True
                self._update_wanted_comments()

    @feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(self, params: types.DidSaveTextDocumentParams) -> None:
        state = self.scheduler.get(params.text_document.uri)
        if state is not None:
            self.scheduler.schedule(state, 0.0)

    @feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        self._forget(params.text_document.uri)

    def _forget(self, uri: str) -> None:
        state = self.scheduler.remove(uri)
        if state is None:
            return
        if state.published and not (state.is_open and self._client.pull_diagnostics):
            self.publisher.withdraw(uri)  # pushed (not open, or a push client): take them back
        self._update_wanted_comments()

    def review_all(self) -> None:
        """Review every open document again now (settings or bundle changed)."""
        self.scheduler.schedule_open()

    def _failed(self, state: DocumentState, error: BaseException) -> None:
        log.error("review of %s failed", state.uri, exc_info=error)
        self.report(f"hunkwise: reviewing {state.uri} failed: {describe_error(error)}")

    # -- the review pipeline -----------------------------------------------------------

    def _source(self, state: DocumentState) -> tuple[str, int | None]:
        if state.is_open:
            document = self._client.document(state.uri)
            return document.source, document.version
        return state.disk_text or "", None

    async def _review(self, state: DocumentState, generation: int) -> None:
        settings = self._settings()
        if state.path is None:
            self._skip(state, Skipped("not a file on disk"))
            return
        text, version = self._source(state)
        target, hunks, skipped = await self.in_git_thread(
            self._base_and_hunks, state.path, text, frozenset(self.dismissals.ids)
        )
        if generation != state.generation:
            return
        state.skipped = skipped
        if isinstance(target, BaseText):
            problem = self.dismissals.store_problem(target.repo_root)
            if problem is not None:
                self.report(f"hunkwise: {problem}")
        if isinstance(target, Skipped):
            self._skip(state, target, quiet=target.reason == _EXCLUDED)
            return
        host, unscored = self._host, self._bundle.unscored
        if host.state in (ModelState.NO_BUNDLE, ModelState.ERROR) or unscored:
            # Nothing to score with (said once, at the load).
            self._set_review(state, None, unscored or host.message or "no bundle")
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
        lines = LineMap(text, self._client.position_codec)
        review = Review(
            uri=state.uri,
            version=version,
            lines=lines,
            base=target,
            bundle=str(host.bundle or ""),
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
        settings = self._settings()
        target = self._repos.base_for(path, settings.diff_base, settings.uses_index, text)
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
        selection = selection.dismissing(self.dismissals.stored(target.repo_root) | dismissed)
        return target, selection.hunks, tuple(selection.skipped)

    async def in_git_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the one thread that talks to git."""
        return await asyncio.get_running_loop().run_in_executor(self._git, function, *args)

    async def _score(self, hunks: Sequence[Hunk], is_stale: Callable[[], bool]) -> dict[str, float]:
        """P(review needed) by hunk id: from the cache, the rest in batched model jobs."""
        host = self._host
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
                    if value == value:  # NaN: a remote engine could not score it; ask again
                        scores.put((hunk.id, key), float(value))
                for index, why in getattr(engine, "unscored", {}).items():
                    log.warning("a hunk of %s was not scored: %s", chunk[index].path, why)
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

    # -- comments and evidence ---------------------------------------------------------

    def comment_key(self) -> tuple[str, int]:
        """What a cached comment depends on besides its hunk: the bundle and the length."""
        return self._host.bundle_key, self._settings().max_new_tokens

    def _fill_cached_comments(self, review: Review) -> None:
        key = self.comment_key()
        for item in review.hunks:
            if item.comment is None:
                item.comment = self.comments.peek((item.hunk.id, *key))
                item.evidence = self.evidence.peek((item.hunk.id, *key)) or ()

    async def _comment(self, state: DocumentState, review: Review, generation: int) -> None:
        """Comments for the flagged hunks still without one, shared with other reviews
        that want the same hunk; the diagnostics are updated as each batch arrives."""
        suffix = self.comment_key()
        wanted = [item for item in review.hunks if self.flagged(item) and item.comment is None]
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
            self.publisher.publish(state)
        hunks = list(todo.values())
        batch = max(1, getattr(self._host.engine, "batch_size", 8) or 8)
        for start in range(0, len(hunks), batch):
            futures.add(self._submit_comments(hunks[start : start + batch], suffix))
        for next_done in asyncio.as_completed([_outcome(future) for future in futures]):
            try:
                comments: Commented = await next_done
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
                self.publisher.publish(state)

    def _submit_comments(self, hunks: list[Hunk], suffix: tuple[str, int]) -> asyncio.Future:
        ids = frozenset(hunk.id for hunk in hunks)
        comments, evidence, host = self.comments, self.evidence, self._host

        def run(engine: Any) -> Commented:
            # No comments learnt: "", and the message is the evidence's or the probability's.
            texts = (
                engine.comment(hunks, should_stop=host.should_stop)
                if engine.has_task(RCG)
                else [""] * len(hunks)
            )
            found = engine.evidence(hunks)
            key = (host.bundle_key, suffix[1])
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

    def _update_wanted_comments(self) -> None:
        wanted: set[str] = set()
        if self._settings().comments:
            for state in self.scheduler:
                if state.review is not None and not state.edited:
                    wanted.update(
                        item.hunk.id
                        for item in state.review.hunks
                        if self.flagged(item) and item.comment is None
                    )
        self._wanted_comments = frozenset(wanted)

    # -- results -----------------------------------------------------------------------

    def _set_review(
        self, state: DocumentState, review: Review | None, unreviewed: str | None = None
    ) -> None:
        state.review, state.unreviewed = review, unreviewed
        state.edited = False
        self.publisher.publish(state)
        self._update_wanted_comments()

    def _skip(self, state: DocumentState, skipped: Skipped, quiet: bool = False) -> None:
        key = (state.uri, skipped.reason)
        if key not in self._logged and not quiet:
            self._logged.add(key)
            self._client.log(f"hunkwise: no review for {state.uri}: {skipped.reason}")
            if skipped.notify:
                self.report(f"hunkwise: {skipped.reason}; check the `hunkwise.diffBase` setting")
        self._set_review(state, None, skipped.reason)

    def _dismissed(self, holders: list[DocumentState]) -> None:
        for state in holders:
            self.publisher.publish(state)
        self._update_wanted_comments()

    def report(self, message: str) -> None:
        """Show a problem to the user once (the same text is not shown twice)."""
        self._client.show_once(message, types.MessageType.Warning)

    def report_model_error(self, error: BaseException) -> None:
        if isinstance(error, HunkwiseError):
            self.report(f"hunkwise: {error}")
        else:
            self.report(f"hunkwise: the model failed: {describe_error(error)}")

    # -- questions about findings ------------------------------------------------------

    def flagged_at(self, uri: str, position: types.Position) -> tuple[Review, ReviewedHunk] | None:
        state = self.scheduler.get(uri)
        if state is None or state.review is None:
            return None
        for item in state.review.hunks:
            if self.flagged(item) and contains(item.range, position):
                return state.review, item
        return None

    def flagged_in(self, uri: str, selection: types.Range) -> list[ReviewedHunk]:
        state = self.scheduler.get(uri)
        if state is None or state.review is None:
            return []
        return [
            item
            for item in state.review.hunks
            if self.flagged(item) and overlaps(item.range, selection)
        ]

    def finding(self, uri: str, hunk_id: str) -> tuple[Review, ReviewedHunk]:
        state = self.scheduler.get(uri)
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

    # -- the whole work tree -----------------------------------------------------------

    async def review_workspace(
        self, roots: list[Path], cancelled: Callable[[], bool], report: Callable[[str, int], None]
    ) -> dict[str, Any]:
        """Review every file that differs from the base in the repositories of ``roots``;
        RNP results are published file by file, comments follow as usual."""
        settings = self._settings()
        files: dict[Path, None] = {}
        for root in roots:
            try:
                changed = await self.in_git_thread(
                    self._repos.changed_files, root, settings.diff_base, settings.uses_index
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
            state = self.scheduler.get(uri)
            if state is None or not state.is_open:
                text = await self.in_git_thread(_read_text, path)
                if text is None:  # deleted since it was listed
                    self._client.log(
                        f"hunkwise: no review for {uri}: no such file on disk any more"
                    )
                    self._forget(uri)
                    continue
                if state is None:
                    state = self.scheduler.add(DocumentState(uri, path, is_open=False))
                state.disk_text = text
            self.scheduler.schedule(state, 0.0)
            await self.scheduler.wait(state)
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

    # -- shutdown ----------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every pending and running review (event loop only)."""
        self.scheduler.stop()

    def close(self) -> None:
        """Stop the git thread, and finish the dismissals still being written (any thread)."""
        self._git.shutdown(wait=False, cancel_futures=True)
        self.dismissals.close()


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
