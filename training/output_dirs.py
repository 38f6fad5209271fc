"""Output directories checked before any work starts (datasets, bundles, reports): one
that cannot be created or written is refused by name, not found out after an hour."""

from __future__ import annotations

import tempfile
from pathlib import Path

from training.errors import HunkwiseError


def check_writable(path: Path, what: str = "output directory") -> None:
    """Refuse, before any work starts, a directory that cannot be created or written: it
    (or its nearest existing ancestor, which must be a directory) must be writable, and so
    must its parent, where atomic writers put their temp files."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise HunkwiseError(f"cannot write the {what} {path}: it exists and is not a directory")
    targets = [path] if path.is_dir() else []
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HunkwiseError(f"cannot write the {what} {path}: {ancestor} is not a directory")
    for target in [*targets, ancestor]:
        # A real probe (an empty directory made and removed at once): permission bits do
        # not tell root about read-only mounts, /proc and the like.
        try:
            tempfile.TemporaryDirectory(prefix=".hunkwise-probe-", dir=target).cleanup()
        except OSError as error:
            raise HunkwiseError(
                f"cannot write the {what} {path}: cannot create anything in {target} "
                f"({error.strerror or type(error).__name__})"
            ) from None
