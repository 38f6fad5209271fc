"""The adapter bundle: its layout, ``manifest.json`` (read, validated, written) and the
atomic replacement of a whole bundle, so a reader never sees half of one.

A bundle is built in a temporary sibling directory and swapped into place in one rename;
a run that fails or is killed leaves the previous bundle where it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import HunkwiseError
from training.output_dirs import check_writable
from training.tasks import ADAPTER_TASKS, LABEL_WORDS, TEMPLATE_NAME

if TYPE_CHECKING:
    from training.options import TrainOptions

BUNDLE_FORMAT = "hunkwise-bundle/1"
MANIFEST = "manifest.json"
#: A manifest's ``base_model`` for a base stored in the bundle's ``base/`` (the tiny preset).
BUNDLE_BASE = "bundle:base"
#: The manifest's ``stage1`` and the directory of the stage-1 adapter, when there is one.
STAGE1 = "stage1"
ADAPTER_FILES: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors")

_RETRAIN = "retrain it with `hunkwise train-from-repo` (or `hunkwise train`)"


class BundleError(HunkwiseError):
    """A bundle is missing, incomplete, of an unknown format, or does not fit the base."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """The content of ``manifest.json`` (see docs/architecture.md, section 4)."""

    base_model: str
    tasks: dict[str, str] = field(default_factory=dict)
    format: str = BUNDLE_FORMAT
    template: str = TEMPLATE_NAME
    stage1: str | None = None
    label_words: dict[str, str] = field(default_factory=lambda: dict(LABEL_WORDS))
    created: str = field(default_factory=_now)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: The served rnp score and default threshold (training.calibration); None: the raw
    #: adapter's P(yes) at threshold 0.5 (bundles trained before calibration existed).
    calibration: dict[str, Any] | None = None
    #: The evidence index (training.evidence): its format, size and each file's SHA-256;
    #: None: findings carry no evidence.
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # The documented key order: format first.
        return {"format": data.pop("format"), **data}

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Check types and required keys; raises :class:`BundleError` saying which."""
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        for key in ("format", "base_model", "tasks"):
            if key not in data:
                raise BundleError(f"manifest.json has no {key!r}")
        expected: dict[str, type | tuple[type, ...]] = {
            "format": str,
            "base_model": str,
            "template": str,
            "stage1": (str, type(None)),
            "tasks": dict,
            "label_words": dict,
            "created": str,
            "training": dict,
            "metrics": dict,
            "calibration": (dict, type(None)),
            "evidence": (dict, type(None)),
        }
        for key, kind in expected.items():
            if key in data and not isinstance(data[key], kind):
                raise BundleError(f"manifest.json: {key!r} has the wrong type")
        for name in ("tasks", "label_words"):
            if name in data and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data[name].items()
            ):
                raise BundleError(f"manifest.json: {name!r} must map strings to strings")
        known = {key: data[key] for key in expected if key in data}
        return cls(**known)


def _format_problem(found: str) -> str:
    if found.startswith("hunkwise-bundle/"):
        return (
            f"bundle format {found!r} is not supported by this hunkwise (it reads "
            f"{BUNDLE_FORMAT!r}); upgrade hunkwise or {_RETRAIN}"
        )
    return f"manifest.json has format {found!r}, not {BUNDLE_FORMAT!r}: not a hunkwise bundle"


def _subdir(bundle: Path, name: str, what: str) -> Path:
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not name:
        raise BundleError(f"bundle {bundle}: {what} directory {name!r} must be inside the bundle")
    return bundle / relative


def _check_adapter(bundle: Path, name: str, what: str) -> None:
    path = _subdir(bundle, name, what)
    if not path.is_dir():
        raise BundleError(f"bundle {bundle} lists {what} in {name}/, which is missing; {_RETRAIN}")
    for file in ADAPTER_FILES:
        if not (path / file).is_file():
            hint = (
                " (only safetensors weights are loaded, never pickles)"
                if file.endswith(".safetensors") and (path / "adapter_model.bin").exists()
                else ""
            )
            raise BundleError(f"bundle {bundle}: {name}/{file} is missing{hint}; {_RETRAIN}")


def read_manifest(bundle: Path) -> Manifest:
    """Read and validate ``bundle/manifest.json`` and the adapters it lists.

    Raises :class:`BundleError` saying what is wrong and how to fix it.
    """
    bundle = Path(bundle)
    if not bundle.exists():
        raise BundleError(
            f"no hunkwise bundle at {bundle}; train one with `hunkwise train-from-repo` "
            f"(or `hunkwise train --out {bundle}`)"
        )
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is a file, not a hunkwise bundle directory")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a hunkwise bundle (no {MANIFEST}); {_RETRAIN}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path} cannot be read ({error}); {_RETRAIN}") from error
    found = data.get("format") if isinstance(data, dict) else None
    if isinstance(found, str) and found != BUNDLE_FORMAT:
        raise BundleError(f"{bundle}: {_format_problem(found)}")
    try:
        manifest = Manifest.from_dict(data)
    except BundleError as error:
        raise BundleError(f"{bundle}: {error}; {_RETRAIN}") from None
    if not manifest.tasks:
        raise BundleError(f"bundle {bundle} lists no adapters; {_RETRAIN}")
    for task, name in manifest.tasks.items():
        if task not in ADAPTER_TASKS:
            raise BundleError(
                f"bundle {bundle} lists unknown task {task!r} "
                f"(known: {', '.join(ADAPTER_TASKS)}); {_RETRAIN}"
            )
        _check_adapter(bundle, name, f"the {task} adapter")
    if manifest.stage1 is not None:
        _check_adapter(bundle, manifest.stage1, "the stage-1 adapter")
    if set(manifest.label_words) != set(LABEL_WORDS):
        raise BundleError(f"bundle {bundle}: label_words must have 'yes' and 'no'; {_RETRAIN}")
    if manifest.calibration is not None:
        from training.calibration import Calibration

        try:
            Calibration.from_dict(manifest.calibration)
        except ValueError as error:
            raise BundleError(f"bundle {bundle}: manifest.json: {error}; {_RETRAIN}") from None
    if manifest.base_model == BUNDLE_BASE and not (bundle / "base").is_dir():
        raise BundleError(
            f"bundle {bundle} says its base model is stored in it ({BUNDLE_BASE}) "
            f"but base/ is missing; {_RETRAIN}"
        )
    return manifest


def _same_base(a: str, b: str, bundle: Path | None = None) -> bool:
    if bundle is not None:
        # The bundle's own base/ may be named either way.
        a, b = (str(bundle / "base") if name == BUNDLE_BASE else name for name in (a, b))
    if a == b:
        return True
    # Two spellings of one local directory are the same base.
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _base_words(name: str, bundle: Path | None) -> str:
    if name == BUNDLE_BASE and bundle is not None:
        return f"{name!r} (the model in {bundle / 'base'})"
    return repr(name)


def _retrain_on(base: str) -> str:
    if base == BUNDLE_BASE:
        return _RETRAIN
    return f"retrain with `hunkwise train --base {base}`"


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """An adapter's adapter_config.json; a BundleError saying why it cannot be read."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read {path} ({error})") from None
    if not isinstance(config, dict):
        raise BundleError(f"{path} does not hold a JSON object")
    return config


def trained_base(adapter_dir: Path) -> str | None:
    """The base model an adapter says it was trained on (``base_model_name_or_path`` in its
    adapter_config.json, which the trainer sets to the manifest's base_model), or None when
    it does not say."""
    try:
        config = read_adapter_config(adapter_dir)
    except BundleError:
        return None
    name = config.get("base_model_name_or_path")
    return name if isinstance(name, str) and name else None


def _adapters(manifest: Manifest) -> dict[str, str]:
    """What each adapter of the manifest is called in messages -> its directory."""
    named = {f"the {task} adapter": subdir for task, subdir in manifest.tasks.items()}
    if manifest.stage1 is not None:
        named = {"the stage-1 adapter": manifest.stage1, **named}
    return named


def check_compatible(
    manifest: Manifest, base_model: str, template: str, bundle: Path | None = None
) -> None:
    """Refuse a bundle trained on another base model or prompt template than the one in use.

    ``base_model`` is the base that is (or is about to be) loaded; it must be the manifest's
    and, given ``bundle``, the one every adapter's adapter_config.json names."""
    retrain = f"use the bundle's base, or {_retrain_on(base_model)}"
    loaded = _base_words(base_model, bundle)
    if not _same_base(manifest.base_model, base_model, bundle):
        raise BundleError(
            f"the bundle was trained on base model {_base_words(manifest.base_model, bundle)} "
            f"but {loaded} is loaded; {retrain}"
        )
    if bundle is not None:
        for what, subdir in _adapters(manifest).items():
            trained = trained_base(bundle / subdir)
            if trained is not None and not _same_base(trained, base_model, bundle):
                raise BundleError(
                    f"{what} in {bundle} was trained on base model "
                    f"{_base_words(trained, bundle)} but {loaded} is loaded; {retrain}"
                )
    if manifest.template != template:
        raise BundleError(
            f"the bundle was trained with prompt template {manifest.template!r} but this "
            f"hunkwise uses {template!r}; retrain the bundle with this version"
        )


def base_mismatch(
    bundle: Path, manifest: Manifest, subdir: str, error: RuntimeError
) -> BundleError | None:
    """The BundleError for peft's "size mismatch" while loading the adapter in ``subdir``:
    its weights do not fit the loaded base's layers, so it was trained on another base
    whatever its config says. None for any other error."""
    if "size mismatch" not in str(error):
        return None
    what = next((w for w, d in _adapters(manifest).items() if d == subdir), f"{subdir}/")
    loaded = manifest.base_model
    trained = trained_base(bundle / subdir)
    if trained is None:
        origin = "its adapter_config.json does not name the base it was trained on"
    elif _same_base(trained, loaded, bundle):
        origin = (
            f"it was trained on a model named {_base_words(trained, bundle)} too, so the model "
            "under that name has changed since (a replaced directory, another hub revision)"
        )
    else:
        origin = f"it was trained on base model {_base_words(trained, bundle)}"
    return BundleError(
        f"{what} in {bundle} does not fit the loaded base model {_base_words(loaded, bundle)}: "
        f"its weights have other shapes than that model's layers; {origin}. Load it on the "
        f"base it was trained on, or {_retrain_on(loaded)}"
    )


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``directory/manifest.json`` atomically (temp file, fsync, rename)."""
    directory = Path(directory)
    path = directory / MANIFEST
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(manifest.to_dict(), out, indent=2, ensure_ascii=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class StageResult:
    """What one training stage (stage0, stage1, or a task's adapter) did, as the manifest
    records it in ``training.stages``."""

    name: str
    train_records: int
    valid_records: int
    steps: int
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    loss_history: list[list[float]] = field(default_factory=list)
    eval_loss_history: list[list[float]] = field(default_factory=list)
    encoding: dict[str, int] = field(default_factory=dict)
    max_length: int = 0
    #: Finished in an earlier, interrupted run and reused (not recorded).
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reused")
        return data


def training_manifest(
    base: str,
    base_model: str,
    data_dir: Path,
    options: TrainOptions,
    results: Sequence[StageResult],
    *,
    tasks: Sequence[str],
    records: Mapping[str, Mapping[str, Any]],
    skipped: Mapping[str, str],
    device: str,
    world_size: int,
    seconds: float,
) -> Manifest:
    """The manifest of a bundle trained on ``base`` (as given; ``base_model`` as the
    manifest names it) with ``options`` (resolved): its adapters, and under ``training``
    what the stages saw and did. ``records`` counts each task's records; ``skipped`` says
    why the tasks left out were."""
    from training import __version__
    from training.rnp import prompt_budget, rnp_prompt_tokens

    adapters = [result for result in results if result.name in tasks]
    max_length = max(result.max_length for result in adapters)
    return Manifest(
        base_model=base_model,
        template=TEMPLATE_NAME,
        stage1=STAGE1 if options.stage1_data is not None else None,
        tasks={task: task for task in tasks},
        training={
            "hunkwise": __version__,
            "data": str(Path(data_dir).resolve()),
            "base": base,
            "device": device,
            "world_size": world_size,
            "options": options.hyper_parameters(),
            # The lengths training saw; the engine keeps prompts within max_prompt_tokens
            # (training never cut a response below a quarter of max_length).
            "max_length": max_length,
            "max_prompt_tokens": prompt_budget(max_length),
            # What rnp examples were cut to (the engine scores hunks cut the same way).
            "rnp_prompt_tokens": rnp_prompt_tokens(options.rnp_prompt_tokens, max_length),
            "records": {task: dict(records[task]) for task in tasks},
            "skipped_tasks": dict(skipped),
            "stages": {result.name: result.to_dict() for result in results},
            "loss_history": {result.name: result.loss_history for result in adapters},
            "eval_loss_history": {result.name: result.eval_loss_history for result in adapters},
            "seconds": seconds,
        },
    )


def copy_adapter(source: Path, target: Path, base_model: str) -> None:
    """Copy a trained LoRA adapter into a bundle, its config naming the bundle's base."""
    shutil.copytree(source, target)
    config = target / "adapter_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    # Not the work dir it was trained against, which is gone after the run.
    data["base_model_name_or_path"] = base_model
    config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def cache_root() -> Path:
    """Where default bundles live: ``$XDG_CACHE_HOME/hunkwise`` (or ``~/.cache/hunkwise``)."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return root / "hunkwise"


def history_id(repo: Path) -> str | None:
    """The repository's identity: the root commit of HEAD's first-parent line, the same in
    every clone and worktree of one history (None: no commits yet, or not readable)."""
    try:
        found = subprocess.run(
            ["git", "rev-list", "--first-parent", "--max-parents=0", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    roots = found.stdout.split() if found.returncode == 0 else []
    return roots[-1] if roots else None


def default_bundle_dir(repo: Path) -> Path:
    """``$XDG_CACHE_HOME/hunkwise/<12 hex digits of the history's root commit>/`` (or
    ``~/.cache``): every clone and worktree of one history shares it, and nothing is
    written into the repository. A repository without commits: the legacy path."""
    identity = history_id(Path(repo).expanduser())
    if identity is None:
        return legacy_bundle_dir(repo)
    return cache_root() / identity[:12]


def legacy_bundle_dir(repo: Path) -> Path:
    """Where hunkwise 0.1.0 put a repository's bundle: ``<repo name>-<8-char hash of
    its path>`` (one per clone). Still read when the history's own location has none."""
    resolved = Path(repo).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return cache_root() / f"{resolved.name or 'repo'}-{digest}"


def find_default_bundle(repo: Path) -> tuple[Path, str]:
    """The bundle a review of ``repo`` uses when none is named, and why: the history's
    default location, else a bundle at the legacy per-clone location, else (not there
    yet) the history's location."""
    path = default_bundle_dir(repo)
    if (path / MANIFEST).is_file():
        return path, "the default location for this history (its root commit)"
    legacy = legacy_bundle_dir(repo)
    if legacy != path and (legacy / MANIFEST).is_file():
        return legacy, "the location older hunkwise versions used for this clone"
    return path, "the default location for this history (its root commit)"


@dataclass(frozen=True)
class BundleSummary:
    """What ``hunkwise bundles`` shows of one bundle."""

    path: str
    base: str
    tasks: list[str]
    created: str
    size_bytes: int
    history: str | None
    served_roc_auc: float | None
    flagged_share: float | None
    evidence_items: int | None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_bundle(path: Path) -> BundleSummary:
    """A bundle's base, adapters, date, size on disk, the history it was trained on (the
    mined dataset's repository name) and its report's headline figures; a bundle that
    cannot be read is listed with its problem."""
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    try:
        manifest = read_manifest(path)
    except BundleError as error:
        return BundleSummary(str(path), "?", [], "", size, None, None, None, None, str(error))
    served = ((manifest.metrics.get("rnp") or {}).get("scorers") or {}).get("served") or {}
    history = None
    data = manifest.training.get("data")
    if isinstance(data, str):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            history = json.loads((Path(data) / "stats.json").read_text(encoding="utf-8"))["repo"]
    return BundleSummary(
        path=str(path),
        base=str(manifest.training.get("base") or manifest.base_model),
        tasks=list(manifest.tasks),
        created=manifest.created,
        size_bytes=size,
        history=history,
        served_roc_auc=(served.get("metrics") or {}).get("roc_auc"),
        flagged_share=served.get("flagged_share"),
        evidence_items=(manifest.evidence or {}).get("items"),
    )


def list_bundles(root: Path | None = None) -> list[BundleSummary]:
    """Every bundle in the cache directory (``cache_root()``), newest first."""
    root = cache_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    found = [summarize_bundle(d) for d in root.iterdir() if (d / MANIFEST).is_file()]
    return sorted(found, key=lambda b: b.created, reverse=True)


# --- atomic replacement ---------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_pattern(final: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)-[^/]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> list[Path]:
    """Remove temp dirs left beside ``final`` by killed writers (their process is gone).

    If a writer died between moving the old bundle aside and moving the new one in (only
    possible where an atomic exchange is unavailable), the old bundle is put back first.
    Returns the directories removed.
    """
    final = Path(final).absolute()
    if not final.parent.is_dir():
        return []
    pattern = _temp_pattern(final)
    removed: list[Path] = []
    for entry in sorted(final.parent.iterdir()):
        match = pattern.match(entry.name)
        if not match or _alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not final.exists() and (entry / MANIFEST).is_file():
            os.rename(entry, final)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def ensure_replaceable(final: Path) -> None:
    """Refuse to replace anything but a bundle (or an empty directory) at ``final``, or a
    place that cannot be written."""
    final = Path(final)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise BundleError(f"{final} exists and is not a directory; choose another bundle path")
    if final.is_dir() and not (final / MANIFEST).is_file() and any(final.iterdir()):
        raise BundleError(
            f"refusing to replace {final}: it is not empty and not a hunkwise bundle "
            f"(no {MANIFEST}); choose another --out"
        )
    check_writable(final, "bundle directory")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_into_place(new: Path, final: Path) -> None:
    if not final.exists():
        os.rename(new, final)
    elif _exchange(new, final):
        # ``new`` now holds the previous bundle.
        shutil.rmtree(new, ignore_errors=True)
    else:
        # No atomic exchange here: a short window without a bundle, repaired by
        # clean_stale() should the process die inside it.
        aside = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(final, aside)
        os.rename(new, final)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(final.parent)


@contextlib.contextmanager
def bundle_writer(final: Path) -> Iterator[Path]:
    """Yield an empty temp dir beside ``final`` to build a bundle in; on normal exit swap
    it into place atomically (the previous bundle, if any, is removed).

    On an exception the temp dir is removed and ``final`` is untouched; after a kill it
    stays as ``.<name>.tmp-<pid>-*`` and the next writer (:func:`clean_stale`) removes it.
    """
    final = Path(final).expanduser().absolute()
    ensure_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        yield temp
        os.chmod(temp, 0o777 & ~_umask())
        _swap_into_place(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
