"""The server's settings as they reach it, in three layers, each over the one before: the
repository's own configuration, ``initializationOptions``, and the client's ``hunkwise``
section; merged into one :class:`server.settings.Settings`, bad values reported once by
name, and the units that care told what changed. Also where the workspace's repository
and its bundle are."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types

from server.client import Client
from server.features import feature
from server.settings import SECTION, Settings, merge
from server.workspace import Repositories
from training.config import read_repo_config, repo_layer
from training.errors import HunkwiseError

log = logging.getLogger(__name__)

#: Called with (old, new) when the settings change after ``initialized``.
Listener = Callable[[Settings, Settings], None]


class Configuration:
    """The current settings, and the layers they are merged from."""

    def __init__(self, client: Client, repos: Repositories) -> None:
        self._client = client
        self._repos = repos
        self.settings = Settings()
        self.init_options: dict[str, Any] = {}
        self.client_settings: dict[str, Any] = {}
        #: set once ``initialized`` came: from then on changes are acted on
        self.live = False
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def take_initialization_options(self, options: Any) -> None:
        if isinstance(options, dict):
            # Some clients nest the section: {"hunkwise": {...}}.
            nested = options.get(SECTION)
            self.init_options = dict(nested) if isinstance(nested, dict) else dict(options)

    # -- where things are --------------------------------------------------------------

    def repo_root(self) -> Path | None:
        """The git repository of the first workspace folder that is in one."""
        for root in self._client.roots():
            found = self._repos.root_of(root)
            if found is not None:
                return found
        return None

    def bundle_path(self) -> Path | None:
        """The ``bundle`` setting (relative paths from the first workspace folder), else
        the default location for the workspace's repository."""
        if self.settings.bundle:
            path = Path(self.settings.bundle).expanduser()
            if not path.is_absolute():
                roots = self._client.roots()
                path = (roots[0] if roots else Path.cwd()) / path
            return path
        root = self.repo_root()
        if root is None:
            return None
        from training.bundle import find_default_bundle

        return find_default_bundle(root)[0]

    # -- the layers --------------------------------------------------------------------

    def repo_settings(self) -> dict[str, Any]:
        """The repository's own configuration (hunkwise.toml or pyproject.toml's
        [tool.hunkwise]): the defaults under the editor's settings. A file that is not
        TOML is shown once and left out."""
        root = self.repo_root()
        if root is None:
            return {}
        try:
            return repo_layer(read_repo_config(root))
        except HunkwiseError as error:
            self._client.show_once(f"hunkwise: {error}")
            return {}

    async def fetch(self) -> None:
        """The client's ``hunkwise`` section, when it answers ``workspace/configuration``."""
        answer = await self._client.configuration(SECTION)
        if answer is not None:
            self.client_settings = answer

    def update(self) -> None:
        """Merge the layers; report bad values; tell the listeners what changed."""
        settings, problems, unknown = merge(
            [self.repo_settings(), self.init_options, self.client_settings]
        )
        for problem in problems:
            self._client.show_once(problem.message)
        for key in unknown:
            if self._client.first_time(key):
                log.info("ignoring unknown setting %s.%s", SECTION, key)
        old, self.settings = self.settings, settings
        if self.live and old != settings:
            for listener in self._listeners:
                listener(old, settings)

    @feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(self, params: types.DidChangeConfigurationParams) -> None:
        pushed = params.settings.get(SECTION) if isinstance(params.settings, dict) else None
        if isinstance(pushed, dict):
            self.client_settings = dict(pushed)
        else:
            await self.fetch()
        self.update()
