"""Dismissed findings: the hunk ids dismissed in this session, and each repository's
dismissal store (training.suppressions, the one ``hunkwise review`` reads), read again
when another process writes it and written off the event loop; the ``hunkwise.dismiss``
command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from server.arguments import object_argument
from server.client import Client
from server.features import command
from server.model import describe_error
from server.scheduling import Scheduler
from training.errors import HunkwiseError
from training.suppressions import DismissalStore


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


class Dismissals:
    """What is dismissed, now and in later sessions. ``changed(states)`` is called on the
    event loop after a dismissal with the documents whose reviews hold the hunk."""

    def __init__(
        self, client: Client, scheduler: Scheduler, changed: Callable[[list[Any]], None]
    ) -> None:
        self._client = client
        self._scheduler = scheduler
        self._changed = changed
        #: hunk ids dismissed in this session (also written to their repository's store)
        self.ids: set[str] = set()
        #: the stores by repository root, loaded by the first review there
        self._stores: dict[Path, StoredDismissals] = {}
        # Writes of the stores: on a thread of their own, so a queued review never delays
        # one and a shutdown, which drops the git thread's queue, waits for them.
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hunkwise-dismissals")

    def stored(self, root: Path) -> frozenset[str]:
        """The ids in the store of the repository at ``root`` (git thread)."""
        stored = self._stores.get(root)
        if stored is None:
            stored = self._stores[root] = StoredDismissals(DismissalStore.for_repo(root))
        return stored.current()

    def store_problem(self, root: Path) -> str | None:
        """Why the store at ``root`` could not be read, if it could not."""
        stored = self._stores.get(root)
        return stored.store.problem if stored is not None else None

    def knows(self, hunk_id: str) -> bool:
        """Whether a review of an open document holds this hunk (flagged or not)."""
        return any(
            state.review is not None and state.review.find(hunk_id) is not None
            for state in self._scheduler
        )

    def dismiss(self, uri: str, hunk_id: str) -> bool:
        """Hide a finding until its hunk's content changes (its id is a content hash), now
        and in later sessions: the dismissal is written to the repository's store off the
        event loop."""
        if hunk_id in self.ids:
            return False
        self.ids.add(hunk_id)
        holders = [
            state
            for state in self._scheduler
            if state.review is not None and state.review.find(hunk_id) is not None
        ]
        self._changed(holders)
        holder = next(
            (state for state in holders if state.uri == uri), holders[0] if holders else None
        )
        if holder is not None and holder.review is not None:
            review = holder.review
            item = review.find(hunk_id)
            path = item.hunk.path if item is not None else None
            self._write(review.base.repo_root, hunk_id, path)
        return True

    def _write(self, root: Path, hunk_id: str, path: str | None) -> None:
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
                self._client.show_once(
                    f"hunkwise: the dismissal lasts for this session only: {reason}"
                )

        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._writes, write).add_done_callback(done)

    @command("hunkwise.dismiss")
    def dismiss_command(self, *args: Any) -> dict[str, Any]:
        argument = object_argument(args, "uri", "hunk")
        uri, hunk = str(argument["uri"]), str(argument["hunk"])
        if not self.knows(hunk):
            return {"dismissed": False, "reason": f"no finding of hunk {hunk!r} to dismiss"}
        return {"dismissed": self.dismiss(uri, hunk)}

    def close(self) -> None:
        """Finish the dismissals still being written (any thread)."""
        self._writes.shutdown(wait=True)
