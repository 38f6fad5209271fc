"""The bundle the server reviews with: finding it from the settings, loading it in the
background with progress (server.model.ModelHost holds the engine), and what the loaded
bundle implies for reviews (its threshold, whether it scores and comments)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types

from server.client import Client
from server.configuration import Configuration
from server.model import ModelHost, ModelState
from training.errors import HunkwiseError
from training.review import review_threshold, unscorable_message
from training.tasks import RCG, RNP


class LoadedBundle:
    """The loaded bundle's state. Listeners: ``on_replaced`` ones run when a load brought
    another engine (caches of the old one are void), ``on_loaded`` ones after every load,
    whatever its outcome (reviews start again)."""

    def __init__(self, host: ModelHost, configuration: Configuration, client: Client) -> None:
        self._host = host
        self._configuration = configuration
        self._client = client
        self._loaded: list[Callable[[], None]] = []
        self._replaced: list[Callable[[], None]] = []
        #: the loaded bundle's default threshold (None: no bundle loaded)
        self.default_threshold: float | None = None
        #: whether the loaded bundle writes review comments (it has an rcg adapter)
        self.has_comments = True
        #: why the loaded bundle cannot score hunks (it has no rnp adapter), or None
        self.unscored: str | None = None
        self._loading: asyncio.Future | None = None

    def on_loaded(self, listener: Callable[[], None]) -> None:
        self._loaded.append(listener)

    def on_replaced(self, listener: Callable[[], None]) -> None:
        self._replaced.append(listener)

    def _tell(self, listeners: list[Callable[[], None]]) -> None:
        for listener in listeners:
            listener()

    @property
    def threshold(self) -> float | None:
        """The threshold reviews use: the setting, else the loaded bundle's (None: neither,
        so nothing is flagged)."""
        setting = self._configuration.settings.threshold
        if self.default_threshold is None:
            return setting
        return review_threshold(setting, self.default_threshold)

    def reload_soon(self) -> None:
        """Start a reload in the background (the bundle or device setting changed)."""
        self._loading = asyncio.ensure_future(self.load())

    async def load(self) -> None:
        """Load (or reload) the bundle in the background with progress; reviews wait for
        it, everything else is answered meanwhile."""
        host, client, settings = self._host, self._client, self._configuration.settings
        bundle = self._configuration.bundle_path()
        if bundle is None:
            host.state = ModelState.NO_BUNDLE
            host.message = (
                "the workspace is not a git repository, so there is no default bundle; "
                "set `hunkwise.bundle`"
            )
            client.show_once(f"hunkwise: {host.message}")
            self._tell(self._loaded)
            return
        progress = await client.progress("hunkwise: loading the review model", str(bundle))
        remote = (
            {}
            if settings.engine == "local"
            else {"engine": settings.engine, "engine_model": settings.engine_model}
        )
        outcome = await host.load(bundle, settings.device, settings.max_new_tokens, **remote)
        if outcome.superseded:
            progress.end("superseded by a newer load")
            return
        self._tell(self._replaced)
        engine = host.engine
        self.default_threshold = None
        self.unscored = None
        if outcome.state is ModelState.READY and engine is not None:
            adapters = ", ".join(getattr(engine.info, "adapters", ())) or "none"
            progress.end(f"loaded ({adapters}) on {host.device}")
            client.log(
                f"hunkwise: loaded the bundle at {bundle} (adapters: {adapters}) "
                f"on {host.device} in {outcome.seconds:.1f} s"
            )
            self.default_threshold = engine.default_threshold
            self.has_comments = engine.has_task(RCG)
            if not engine.has_task(RNP):
                # Once per load: reviews stay empty, the edit adapters keep working.
                self.unscored = await _unscorable(bundle)
                client.show(f"hunkwise: {self.unscored}", types.MessageType.Warning)
        elif outcome.state is ModelState.NO_BUNDLE:
            progress.end("no bundle")
            root = self._configuration.repo_root() or (client.roots() or [Path(".")])[0]
            client.show_once(
                f"hunkwise: no trained bundle at {bundle}, so there are no reviews yet. "
                f"Train one for this repository with `hunkwise train-from-repo {root} --base tiny` "
                "(or the command hunkwise.trainFromRepo), or with `hunkwise train ... "
                f"--out {bundle}`; or point the `hunkwise.bundle` setting at a bundle.",
                types.MessageType.Warning,
            )
        else:
            progress.end("failed")
            client.show_once(
                f"hunkwise: cannot load the bundle at {bundle}: {outcome.message}",
                types.MessageType.Error,
            )
        self._tell(self._loaded)


async def _unscorable(bundle: Path) -> str:
    """What to say about a bundle without an rnp adapter, with the reason its manifest
    records (read off the event loop)."""

    def read() -> str:
        from training.bundle import read_manifest

        try:
            manifest = read_manifest(bundle)
        except HunkwiseError:  # a loader that takes bundles without a manifest
            manifest = None
        return unscorable_message(bundle, manifest)

    return await asyncio.get_running_loop().run_in_executor(None, read)
