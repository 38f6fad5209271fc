"""The commands that act on the whole workspace: review every changed file
(``hunkwise.reviewWorkspace``), train a bundle on the repository
(``hunkwise.trainFromRepo``, through server.training_job), reload the bundle and report
the server's status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from server import training_job
from server.arguments import shown
from server.bundles import LoadedBundle
from server.client import Client
from server.configuration import Configuration
from server.features import command
from server.model import ModelHost
from server.reviews import Reviewer
from server.text import model_safe
from training.errors import HunkwiseError
from training.tasks import ADAPTER_TASKS


class WorkspaceCommands:
    """``status()`` is the server's status (server.server.HunkwiseServer.status)."""

    def __init__(
        self,
        client: Client,
        configuration: Configuration,
        host: ModelHost,
        bundle: LoadedBundle,
        reviewer: Reviewer,
        train_command: Sequence[str],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self._client = client
        self._configuration = configuration
        self._host = host
        self._bundle = bundle
        self._reviewer = reviewer
        self._train_command = tuple(train_command)
        self._status = status
        self.training: asyncio.Task | None = None

    @property
    def training_running(self) -> bool:
        return self.training is not None and not self.training.done()

    async def stop_training(self, timeout: float = 15) -> None:
        """Stop a training run in progress (shutdown): its child is stopped, and the
        previous bundle stays."""
        if self.training is not None and not self.training.done():
            self.training.cancel()
            await asyncio.wait([self.training], timeout=timeout)

    @command("hunkwise.reviewWorkspace")
    async def review_workspace(self, *args: Any) -> dict[str, Any]:
        client = self._client
        token = client.cancel_token()
        progress = await client.progress("hunkwise: reviewing changed files", cancellable=True)
        token.watch(progress)
        try:
            result = await self._reviewer.review_workspace(
                client.roots(), lambda: token.cancelled, progress.report
            )
        except HunkwiseError as error:
            progress.end("failed")
            client.show(f"hunkwise: {error}")
            return {
                "files": 0,
                "reviewed": 0,
                "flagged": 0,
                "cancelled": False,
                "error": str(error),
            }
        progress.end(
            "cancelled"
            if result["cancelled"]
            else f"{result['reviewed']} files, {result['flagged']} findings"
        )
        return result

    @command("hunkwise.trainFromRepo")
    async def train_from_repo(self, *args: Any) -> dict[str, Any]:
        client = self._client
        argument = args[0] if args else None
        if argument is None:
            argument = {}
        if not isinstance(argument, dict):
            raise JsonRpcInvalidParams(
                f"expected one object argument {{base?, tasks?}} (got {shown(argument)})"
            )
        base, tasks = _train_base(argument.get("base")), _train_tasks(argument.get("tasks"))
        root, bundle = self._configuration.repo_root(), self._configuration.bundle_path()
        if root is None or bundle is None:
            client.show("hunkwise: trainFromRepo needs a workspace inside a git repository")
            return {"trained": False, "reason": "not a git repository"}
        base = _trainer_base(root, base)
        from training.models import check_base

        try:  # before anything starts: a base that cannot load would fail after the mining
            await asyncio.get_running_loop().run_in_executor(None, check_base, base)
        except HunkwiseError as error:
            reason = str(error)
            client.show(f"hunkwise: cannot train: {reason}")
            return {"trained": False, "reason": reason}
        if self.training_running:
            return {"trained": False, "reason": "a training run is already going on"}
        token = client.cancel_token()
        progress = await client.progress(
            "hunkwise: training on this repository", f"{root} -> {bundle}", cancellable=True
        )
        token.watch(progress)

        def relay(line: str) -> None:
            said = training_job.read_progress(line)
            progress.report(said.message, said.percentage)

        arguments = training_job.train_arguments(self._train_command, root, bundle, base, tasks)
        client.log(f"hunkwise: running {' '.join(arguments)}")
        self.training = asyncio.ensure_future(
            training_job.run_training(arguments, root, relay, lambda: token.cancelled)
        )
        try:
            outcome = await self.training
        except asyncio.CancelledError:
            progress.end("stopped")
            return {"trained": False, "cancelled": True}
        except OSError as error:
            progress.end("failed")
            client.show(f"hunkwise: cannot start the trainer: {error}", types.MessageType.Error)
            return {"trained": False, "reason": str(error)}
        if outcome.cancelled:
            progress.end("cancelled; the previous bundle, if any, is unchanged")
            return {"trained": False, "cancelled": True}
        if outcome.returncode != 0:
            progress.end("failed")
            last = outcome.output.strip().splitlines()[-1:] or [f"exit status {outcome.returncode}"]
            client.show(f"hunkwise: training failed: {last[0]}", types.MessageType.Error)
            return {"trained": False, "returncode": outcome.returncode, "output": outcome.output}
        progress.end(f"bundle written to {bundle}")
        await self._bundle.load()
        return {"trained": True, "bundle": str(bundle), "state": self._host.state.value}

    @command("hunkwise.reloadBundle")
    async def reload_bundle(self, *args: Any) -> dict[str, Any]:
        await self._bundle.load()
        return self._status()

    @command("hunkwise.status")
    def status(self, *args: Any) -> dict[str, Any]:
        return self._status()


def _train_base(value: Any) -> str:
    """The ``base`` argument of hunkwise.trainFromRepo (unset: ``tiny``)."""
    if value is None or value == "":
        return "tiny"
    if not isinstance(value, str) or not value.strip():
        raise JsonRpcInvalidParams(
            f"'base' must be a string: tiny, a local model directory or a hub id "
            f"(got {shown(value)})"
        )
    if model_safe(value) != value:
        raise JsonRpcInvalidParams("'base' holds a NUL or a lone surrogate: no model is named so")
    return value.strip()


def _train_tasks(value: Any) -> list[str]:
    """The ``tasks`` argument of hunkwise.trainFromRepo: a list of tasks or a comma string
    (unset or empty: every task)."""
    known = ", ".join(ADAPTER_TASKS)
    if value is None:
        return []
    if isinstance(value, str):
        value = [task.strip() for task in value.split(",") if task.strip()]
    if not isinstance(value, list) or not all(isinstance(task, str) for task in value):
        raise JsonRpcInvalidParams(
            f"'tasks' must be a list of {known}, or one comma-separated string (got {shown(value)})"
        )
    unknown = [task for task in value if task not in ADAPTER_TASKS]
    if unknown:
        raise JsonRpcInvalidParams(
            f"'tasks' has unknown tasks {', '.join(map(shown, unknown))}; the tasks are {known}"
        )
    return list(dict.fromkeys(value))


def _trainer_base(root: Path, base: str) -> str:
    """``base`` as the trainer, which runs in ``root``, reads it: a relative path names a
    directory of the repository, so the check here looks where the trainer will."""
    if base == "tiny" or Path(base).expanduser().is_absolute():
        return base
    in_root = root / base
    return str(in_root) if in_root.exists() or base.startswith(".") else base
