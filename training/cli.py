"""The ``hunkwise`` command. Heavy libraries (torch, transformers, peft, datasets) are
imported inside the commands that need them, so ``--help`` and ``mine`` start fast."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from training import __version__
from training.errors import HunkwiseError, first_line
from training.mining.filters import MAX_FILE_BYTES, MAX_HUNK_LINES

if TYPE_CHECKING:
    from training.mining.miner import MineOptions
    from training.options import TrainOptions


def handle_stop_signals() -> None:
    """Ctrl-C and SIGTERM unwind the program (so temp dirs are removed and nothing
    half-written is left), even when SIGINT came in ignored: a child of a background job
    in a non-interactive shell inherits SIGINT ignored, and the language server stops its
    training child with SIGINT, then SIGTERM."""

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)


#: ``hunkwise --debug`` or HUNKWISE_DEBUG=1: failures print their traceback too.
DEBUG_ENV = "HUNKWISE_DEBUG"
#: OSErrors the user can fix (a path that does not exist, is not writable ...): exit 2;
#: the others (a full disk, an I/O error) are runtime failures: exit 3.
_USER_ERRNOS = frozenset(
    (
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EROFS,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    )
)


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _fail(message: str, status: int, error: BaseException) -> NoReturn:
    if _debugging():
        traceback.print_exception(error)
    click.echo(f"hunkwise: error: {message}", err=True)
    sys.exit(status)


def _os_error_message(error: OSError) -> str:
    what = error.strerror or str(error) or type(error).__name__
    if error.filename is not None:
        return f"{error.filename}: {what}"
    return what


def user_errors(command):
    """Every failure as one line on stderr and an exit status: 2 for bad usage or input
    (a HunkwiseError, a path the user gave that cannot be read or written), 3 for runtime
    failures (out of memory, a full disk, a bug); 130 when interrupted. ``--debug`` adds
    the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except HunkwiseError as error:
            _fail(str(error), error.exit_code, error)
        except KeyboardInterrupt:
            click.echo("hunkwise: interrupted", err=True)
            sys.exit(130)
        except OSError as error:
            _fail(_os_error_message(error), 2 if error.errno in _USER_ERRNOS else 3, error)
        except MemoryError as error:
            _fail("out of memory; try a smaller --batch-size", 3, error)
        except Exception as error:
            if type(error).__name__ == "OutOfMemoryError":  # torch's, on any device
                _fail(
                    f"out of memory on the device ({first_line(error)}); try a smaller "
                    "--batch-size or --max-length, or --device cpu",
                    3,
                    error,
                )
            _fail(
                f"internal error: {type(error).__name__}: {first_line(error)}. This is a "
                f"bug in hunkwise: rerun with `hunkwise --debug ...` and report the traceback",
                3,
                error,
            )

    return wrapper


class _Setting(click.ParamType):
    """An option that takes what the setting ``key`` takes, checked by that setting's own
    converter (training.config.FIELDS): the same rule on the command line, in
    hunkwise.toml and in the editor's settings."""

    def __init__(self, key: str, name: str) -> None:
        self.key = key
        self.name = name

    def convert(self, value, param, ctx):
        from training.config import FIELDS, BadValue

        try:
            return FIELDS[self.key][1](value)
        except BadValue as error:
            self.fail(f"{value!r} {error}", param, ctx)


#: A torch device as every command, training option and the ``device`` setting take it
#: (:func:`training.models.device_name`).
DEVICE = _Setting("device", "device")

#: ``--device`` of the commands that load a model themselves (train, train-from-repo, eval).
DEVICE_OPTION = click.option(
    "--device",
    type=DEVICE,
    default="auto",
    show_default=True,
    help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
)


#: ``--repo``: the repository a command works on (review, dismiss, status).
REPO_OPTION = click.option(
    "--repo",
    "repo",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The git repository (or a directory inside it).",
)


#: The options of mining, by the MineOptions field each sets (see :func:`mining_options`).
_MINING_OPTIONS = {
    "rev": click.option(
        "--rev", default="HEAD", show_default=True, help="Revision whose history is mined."
    ),
    "max_commits": click.option(
        "--max-commits",
        type=click.IntRange(min=1),
        default=None,
        help="Mine only the newest N commits of that history.",
    ),
    "horizon_commits": click.option(
        "--horizon-commits",
        type=click.IntRange(min=1),
        default=None,
        help="A hunk needed review if a fix touched its lines within the next N commits "
        "[default: 100, or a fifth of a shorter history (at least 3)].",
    ),
    "horizon_days": click.option(
        "--horizon-days",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Or: within D days of the commit (instead of --horizon-commits).",
    ),
    "jobs": click.option(
        "--jobs",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="git processes that compute the diffs in parallel (the line tracking is one stream).",
    ),
    "max_file_bytes": click.option(
        "--max-file-bytes",
        type=click.IntRange(min=1),
        default=MAX_FILE_BYTES,
        show_default=True,
        help="Skip files whose diff in one commit is larger than this.",
    ),
    "max_hunk_lines": click.option(
        "--max-hunk-lines",
        type=click.IntRange(min=1),
        default=MAX_HUNK_LINES,
        show_default=True,
        help="Skip hunks longer than this many lines.",
    ),
}


def mine_options(**values) -> MineOptions:
    """The MineOptions of the mining options a command was given (the rest at their
    defaults); a usage error for a horizon given both ways."""
    from training.mining.miner import MineOptions

    if values.get("horizon_commits") is not None and values.get("horizon_days") is not None:
        raise click.UsageError("give either --horizon-commits or --horizon-days, not both")
    return MineOptions(**values)


def _option_group(table: dict, build, keyword: str, names: tuple[str, ...] = ()):
    """A decorator adding the click options of ``table`` (by the field each sets; only
    ``names`` when given) to a command, which receives them as one object: ``build(**values)``
    passed as ``keyword``, not one by one."""
    chosen = names or tuple(table)

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in chosen}
            return command(*args, **{keyword: build(**values)}, **kwargs)

        for name in reversed(chosen):
            wrapper = table[name](wrapper)
        return wrapper

    return decorate


def mining_options(*names: str):
    """The mining options ``names`` (MineOptions fields; default: all of them) of a command
    that mines; they arrive in the command as ``mining`` (a MineOptions)."""
    return _option_group(_MINING_OPTIONS, mine_options, "mining", names)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _console(json_output: bool):
    from rich.console import Console

    # With --json, stdout carries only the JSON document; progress goes to stderr.
    return Console(stderr=True) if json_output else Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="hunkwise")
@click.option(
    "--debug",
    is_flag=True,
    help=f"Print the traceback of a failure (for bug reports; or set {DEBUG_ENV}=1).",
)
def main(debug: bool) -> None:
    """hunkwise: a code reviewer trained on your repository's own history.

    \b
    Exit status: 0 done, 1 findings (review), 2 bad usage or input, 3 runtime failure,
    130 interrupted.
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"
    handle_stop_signals()
    # Library warnings (transformers, peft) are noise for a user of the command line; set
    # TRANSFORMERS_VERBOSITY=warning to see them.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@main.command(short_help="Mine a repository's history into review training records.")
@click.argument("repo", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write <task>/{train,valid,test}.jsonl and stats.json into "
    "[default: the dataset folder beside the repository's default bundle, where "
    "train-from-repo keeps it].",
)
@mining_options()
@click.option("--json", "json_output", is_flag=True, help="Print stats as JSON on stdout.")
@user_errors
def mine(repo: Path, out: Path | None, mining: MineOptions, json_output: bool) -> None:
    """Mine REPO's git history into review training records (default: the current directory).

    \b
    Examples:
      hunkwise mine ~/src/flask --out data/flask
      hunkwise mine . --max-commits 2000 --jobs 2 --json
    """
    from training.mining.miner import mine_repository
    from training.progress import summary_table

    if out is None:
        from training.bundle import default_bundle_dir
        from training.gitio.command import repo_root

        bundle = default_bundle_dir(repo_root(repo))
        out = bundle.parent / f".{bundle.name}.data"
    console = _console(json_output)
    stats = mine_repository(repo, out, mining, console=console)
    if json_output:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        console.print(summary_table(stats, title=f"hunkwise mine: {stats['repo']} -> {out}"))


@main.command("import", short_help="Import review data (CodeReviewer, Alpaca, GitHub reviews).")
@click.argument(
    "fmt", metavar="FORMAT", type=click.Choice(["codereviewer", "alpaca", "github-review"])
)
@click.argument(
    "files", metavar="FILE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write <task>/{train,valid,test}.jsonl and stats.json into.",
)
@click.option("--json", "json_output", is_flag=True, help="Print stats as JSON on stdout.")
@user_errors
def import_(fmt: str, files: tuple[Path, ...], out: Path, json_output: bool) -> None:
    """Import review data in FORMAT from FILE... (JSON or JSONL) into --out.

    \b
    codereviewer   the CodeReviewer dataset: patch+y -> rnp, msg -> rcg, old+new+comment -> cr
    alpaca         Alpaca / Code Alpaca instruction, input, output -> instruct
    github-review  `gh api --paginate repos/OWNER/REPO/pulls/comments` -> rcg and rnp (yes)

    A file named for a split (msg-test.jsonl, train.json) goes to that split; the rest are
    split by time. Malformed rows are skipped and counted in stats.json.

    \b
    Examples:
      hunkwise import codereviewer msg-train.jsonl msg-valid.jsonl msg-test.jsonl --out data/cr
      gh api --paginate repos/OWNER/REPO/pulls/comments > reviews.json
      hunkwise import github-review reviews.json --out data/reviews
    """
    from training.mining.importers import import_files
    from training.progress import summary_table

    console = _console(json_output)
    stats = import_files(fmt, files, out, console=console)
    if json_output:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        console.print(summary_table(stats, title=f"hunkwise import {fmt} -> {out}"))


@main.command(short_help="Review changes and print the hunks that may need review.")
@click.argument("spec", required=False, metavar="[REV | A...B | A..B | -]")
@click.option("--staged", is_flag=True, help="Review the staged changes (the index against HEAD).")
@click.option(
    "--base",
    "base",
    default=None,
    metavar="REF",
    help="Review the commits of HEAD since it forked from REF (like git diff REF...HEAD): "
    "a branch against origin/main.",
)
@click.option(
    "--patch",
    "patch",
    type=click.File("rb"),
    default=None,
    help="Review a unified diff read from this file (`-`: stdin), e.g. from `gh pr diff`.",
)
@REPO_OPTION
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Adapter bundle [default: the repository's bundle in the user cache dir].",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Flag hunks whose review probability is at least this [default: the bundle's "
    "threshold, chosen on its validation split when it was trained; 0.5 for a bundle "
    "without one].",
)
@click.option("--no-comments", is_flag=True, help="Only score hunks; generate no review comments.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="text: one line per finding, like a linter; json; sarif: SARIF 2.1.0 for code scanning.",
)
@click.option("--json", "json_output", is_flag=True, help="The same as --format json.")
@click.option("-q", "--quiet", is_flag=True, help="Print the findings only, no summary.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Also list each file or hunk left out, and why."
)
@click.option(
    "--device",
    type=DEVICE,
    default=None,
    help="auto, cpu, cuda, cuda:N or mps [default: the configuration's, else auto].",
)
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="GLOB",
    help="Do not review files matching GLOB (repeatable; added to the configuration's).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Length bound of each generated review comment, in tokens.",
)
@click.option(
    "--engine",
    "engine",
    type=_Setting("engine", "url"),
    default=None,
    metavar="URL",
    help="Score and comment with the bundle's adapters served by this OpenAI-compatible "
    "engine (vLLM, SGLang, llama.cpp; see `hunkwise serve-command`), or `local` "
    "[default: the configuration's, else local]. Its API key is read from "
    "$HUNKWISE_ENGINE_API_KEY.",
)
@click.option(
    "--engine-model",
    "engine_model",
    type=_Setting("engineModel", "name"),
    default=None,
    metavar="NAME",
    help="The engine's model name of each adapter, with {task} in it [default: {task}; "
    "SGLang: hunkwise:{task}].",
)
@click.option(
    "--show-dismissed",
    is_flag=True,
    help="Also review the hunks dismissed before (in the editor or with `hunkwise dismiss`).",
)
@click.option(
    "--exit-zero", is_flag=True, help="Exit 0 even when hunks are flagged (exit 1 otherwise)."
)
@click.option(
    "--fail-on-probability",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="P",
    help="Exit 1 only when a finding's probability is at least P (findings below it are "
    "still shown).",
)
@user_errors
def review(
    spec: str | None,
    staged: bool,
    base: str | None,
    patch,
    repo: Path,
    bundle: Path | None,
    threshold: float | None,
    no_comments: bool,
    output_format: str,
    json_output: bool,
    quiet: bool,
    verbose: bool,
    device: str | None,
    exclude: tuple[str, ...],
    batch_size: int,
    max_new_tokens: int,
    engine: str | None,
    engine_model: str | None,
    show_dismissed: bool,
    exit_zero: bool,
    fail_on_probability: float | None,
) -> None:
    """Review a commit (REV against its first parent), a branch (A...B: B's changes since it
    forked from A; or --base A for HEAD's), a range A..B (B's tree against A's), the staged
    changes, a patch (`-` or --patch FILE), or by default the uncommitted changes to
    tracked files, and print the hunks that may need review.

    \b
    Examples:
      hunkwise review                        # what you have not committed yet
      hunkwise review HEAD                   # the last commit
      hunkwise review --base origin/main     # your branch, as its pull request shows it
      gh pr diff 12 | hunkwise review -      # somebody's pull request
      hunkwise review --staged --fail-on-probability 0.5   # a commit hook

    Files training never learns from (binary, vendored, lockfiles, minified, generated) and
    over-long hunks are skipped and counted. A bundle without a review-necessity (rnp)
    adapter cannot score: review says so and reports nothing.

    The repository's hunkwise.toml (or pyproject.toml's [tool.hunkwise]) sets defaults
    for bundle, device, threshold and exclude; options win over it.

    Exit status, like a linter's: 0 no findings, 1 findings (see --exit-zero and
    --fail-on-probability), 2 bad usage or input, 3 runtime failure."""
    from training.bundle import read_manifest
    from training.config import read_repo_config
    from training.gitio.command import repo_root
    from training.remote import DEFAULT_MODEL_NAME
    from training.review import (
        display_path,
        finding_lines,
        findings_for,
        format_probability,
        hunks_for,
        hunks_from_patch,
        range_note,
        render_json,
        render_sarif,
        render_text,
        review_threshold,
        scoring_problem,
    )

    if json_output:
        output_format = "json"
    root = repo_root(repo)
    repo_config = read_repo_config(root)
    config = repo_config.checked()
    whose = "--threshold" if threshold is not None else "the bundle's"
    if threshold is None and "threshold" in config:
        threshold, whose = config["threshold"], repo_config.source.name
    device = device or config.get("device", "auto")
    engine_url = engine or config.get("engine", "local")
    engine_model = engine_model or config.get("engineModel", DEFAULT_MODEL_NAME)
    globs = (*config.get("exclude", ()), *exclude)
    if bundle is None and config.get("bundle"):
        bundle = Path(config["bundle"])
    if bundle is None:
        from training.bundle import find_default_bundle

        bundle = find_default_bundle(root)[0]
    if not (bundle / "manifest.json").is_file():
        raise HunkwiseError(
            f"no hunkwise bundle at {bundle}; make one with "
            f"`hunkwise train-from-repo {root} --base tiny` "
            "or pass --bundle"
        )
    if spec == "-":
        if patch is not None:
            raise click.UsageError("give either `-` or --patch, not both")
        patch = click.open_file("-", "rb")
    if patch is not None:
        if spec not in (None, "-") or staged or base:
            raise click.UsageError("a patch is reviewed on its own: no REV, --staged or --base")
        selection = hunks_from_patch(patch.read(), root)
    else:
        selection = hunks_for(
            root, spec, staged=staged, base=base, worktree_base=config.get("diffBase", "HEAD")
        )
        note = range_note(root, spec)
        if note:
            click.echo(f"hunkwise: note: {note}", err=True)
    selection = selection.excluding(globs)
    if not show_dismissed:
        from training.suppressions import DismissalStore

        store = DismissalStore.for_repo(root)
        dismissed = store.ids()
        if store.problem:
            click.echo(f"hunkwise: warning: {store.problem}", err=True)
        selection = selection.dismissing(dismissed)
    problem = scoring_problem(bundle, read_manifest(bundle))
    hunks = selection.hunks if problem is None else []
    findings = []
    console = _console(True)
    if hunks:
        from training.remote import is_local, open_engine

        where = bundle if is_local(engine_url) else f"{bundle} on {engine_url}"
        with console.status(f"loading {where}"):
            engine = open_engine(
                bundle,
                engine_url,
                device=device,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                engine_model=engine_model,
            )
        cut = review_threshold(threshold, engine.default_threshold)
        with console.status(f"reviewing {len(hunks)} hunks"):
            probabilities = engine.score(hunks)
            for index, why in getattr(engine, "unscored", {}).items():
                place = display_path(hunks[index].path, root, Path.cwd())
                line = finding_lines(hunks[index])[0]
                click.echo(f"hunkwise: warning: {place}:{line} not scored: {why}", err=True)
            findings = findings_for(
                engine, hunks, probabilities, threshold=cut, comments=not no_comments
            )
    if output_format == "json":
        click.echo(render_json(findings, selection.skipped), nl=False)
    else:
        rendered = (
            render_sarif(findings, root)
            if output_format == "sarif"
            else render_text(findings, root, Path.cwd())
        )
        click.echo(rendered, nl=False)
    if problem is not None:
        click.echo(f"hunkwise: {problem}", err=True)
        return
    if findings and engine.evidence_index()[0] is None and read_manifest(bundle).evidence:
        click.echo(f"hunkwise: warning: {engine.evidence_index()[1]}", err=True)
    if output_format == "text" and verbose:
        for skip in selection.skipped:
            what = f"a hunk of {skip.path}" if skip.hunk is not None else skip.path
            console.print(f"hunkwise: skipped {what}: {skip.description}", highlight=False)
    if output_format == "text" and not quiet:
        summary = f"hunkwise: {_count(len(hunks), 'hunk')} reviewed, {len(findings)} flagged"
        counts = selection.counts()
        if counts:
            summary += "; skipped: " + ", ".join(
                f"{count} {reason}" for reason, count in counts.items()
            )
        scored = [i for i, p in enumerate(probabilities) if p == p] if hunks else []  # NaN
        if scored and not findings:
            top = max(scored, key=probabilities.__getitem__)
            summary += (
                f" (threshold {cut:.2f}, {whose}; highest p="
                f"{format_probability(probabilities[top])}: "
                f"{display_path(hunks[top].path, root, Path.cwd())}:"
                f"{finding_lines(hunks[top])[0]})"
            )
        console.print(summary, highlight=False, soft_wrap=True)
    if exit_zero:
        return
    floor = 0.0 if fail_on_probability is None else fail_on_probability
    if any(finding.probability >= floor for finding in findings):
        sys.exit(1)


def _task_list(ctx, param, value: str | None) -> tuple[str, ...] | None:
    from training.options import check_tasks

    if value is None:
        return None
    tasks = tuple(dict.fromkeys(task.strip() for task in value.split(",") if task.strip()))
    try:
        check_tasks(tasks)
    except HunkwiseError as error:
        raise click.BadParameter(str(error)) from None
    return tasks


#: The fine-tuning options of `train` and `train-from-repo`, by the TrainOptions field each
#: sets (see :func:`training_options`).
_TRAINING_OPTIONS = {
    "tasks": click.option(
        "--tasks",
        callback=_task_list,
        default=None,
        help="Comma-separated adapters to train [default: rnp,rcg,cr,edit].",
    ),
    "stage1_data": click.option(
        "--stage1-data",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Alpaca / Code Alpaca JSON or JSONL for stage-1 instruction tuning (optional).",
    ),
    "epochs": click.option(
        "--epochs",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Epochs per adapter [default: 3 on a GPU, 1 on CPU].",
    ),
    "max_steps": click.option(
        "--max-steps",
        type=click.IntRange(min=1),
        default=None,
        help="Cap every stage at N optimizer steps (wins over --epochs).",
    ),
    "batch_size": click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Per device.",
    ),
    "max_length": click.option(
        "--max-length",
        type=click.IntRange(min=64),
        default=None,
        help="Tokens per example; longer inputs are cut in the middle "
        "[default: 1024 on a GPU, 512 on CPU].",
    ),
    "max_records_per_task": click.option(
        "--max-records-per-task",
        type=click.IntRange(min=0),
        default=None,
        help="Train on the newest N records of each task, 0 for all "
        "[default: all on a GPU, 600 on CPU].",
    ),
    "device": DEVICE_OPTION,
    "resume": click.option(
        "--resume",
        is_flag=True,
        help="Continue an interrupted run (same arguments) where it stopped.",
    ),
}


def _train_options(**values) -> TrainOptions:
    from training.options import TrainOptions

    if values["tasks"] is None:  # every adapter
        del values["tasks"]
    return TrainOptions(**values)


def training_options(command):
    """The fine-tuning options `train` and `train-from-repo` share; they arrive in the
    command as ``options`` (a TrainOptions)."""
    return _option_group(_TRAINING_OPTIONS, _train_options, "options")(command)


@main.command(short_help="Fine-tune LoRA adapters on a dataset into a bundle.")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A dataset written by `hunkwise mine` or `hunkwise import` (<task>/train.jsonl ...).",
)
@click.option(
    "--base",
    required=True,
    help="Base model: a hub id (Qwen/Qwen2.5-Coder-1.5B-Instruct), a local directory, or "
    "`tiny` (built from scratch on the data; CPU, minutes).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Bundle directory to write (replaced atomically when training succeeds).",
)
@training_options
@click.option("--json", "json_output", is_flag=True, help="Print the manifest as JSON on stdout.")
@user_errors
def train(data_dir: Path, base: str, out: Path, options: TrainOptions, json_output: bool) -> None:
    """Fine-tune LoRA adapters on a dataset and write an adapter bundle.

    Works unchanged under `torchrun` / `accelerate launch` (only the main process writes).

    \b
    Examples:
      hunkwise train --data data/flask --base tiny --out bundles/flask
      hunkwise train --data data/flask --base Qwen/Qwen2.5-Coder-1.5B-Instruct \\
          --out bundles/flask-qwen --device cuda --tasks rnp,rcg
    """
    from training.bundle import read_manifest
    from training.finetune import train_bundle

    console = _console(json_output)
    bundle = train_bundle(data_dir, base, out, options, console=console)
    if json_output and os.environ.get("RANK", "0") == "0":
        manifest = read_manifest(bundle)
        click.echo(json.dumps({"bundle": str(bundle), **manifest.to_dict()}, indent=2))


def _print_report(console, report) -> None:
    from rich.markdown import Markdown

    from training.report import report_markdown

    # Images (the plots) are files in the bundle; a terminal shows the tables, and no
    # heading whose section held only a plot.
    sections = re.split(r"(?m)^(?=## )", report_markdown(report))
    kept = []
    for section in sections:
        lines = [line for line in section.splitlines() if not line.startswith("![")]
        body = [line for line in lines[1:] if line.strip()]
        if section.startswith("## ") and not body:
            continue
        kept.append("\n".join(lines))
    console.print(Markdown("\n".join(kept)))


@main.command("train-from-repo", short_help="Mine, train and evaluate a bundle in one go.")
@click.argument("repo", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    help="`tiny` (built from scratch, CPU, minutes), a local model directory, or a hub id.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bundle directory [default: $XDG_CACHE_HOME/hunkwise/<root commit>, shared by every clone].",
)
@mining_options("rev", "max_commits", "horizon_commits")
@click.option(
    "--eval-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Evaluate at most the newest N test records per task, 0 for all "
    "[default: every rnp record; for rcg, cr and edit all on a GPU, 60 on CPU].",
)
@click.option(
    "--stopwords",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Stop-word list for RCG BLEU-4 without stop words (CodeReviewer's stopwords.txt).",
)
@training_options
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print the bundle path, mining stats and metrics as JSON on stdout.",
)
@click.option(
    "--progress",
    "progress_format",
    type=click.Choice(["bar", "json"]),
    default="bar",
    show_default=True,
    help="json: one JSON object per line on stdout (stage, step, total, loss, eta, "
    "percent), the last one the result; messages go to stderr. For editors and scripts.",
)
@user_errors
def train_from_repo(
    repo: Path,
    base: str,
    out: Path | None,
    mining: MineOptions,
    eval_limit: int | None,
    stopwords: Path | None,
    options: TrainOptions,
    json_output: bool,
    progress_format: str,
) -> None:
    """Mine REPO's history, train a bundle on it, and evaluate it (default: current directory).

    Nothing is written into the repository: the dataset and the bundle go to the cache
    directory (or --out).

    \b
    Examples:
      hunkwise train-from-repo . --base tiny            # CPU, minutes
      hunkwise train-from-repo ~/src/app --base Qwen/Qwen2.5-Coder-1.5B-Instruct
      hunkwise train-from-repo . --base tiny --progress json   # for a program to read
    """
    from training.bundle import default_bundle_dir, ensure_replaceable
    from training.evaluate import evaluate_bundle
    from training.finetune import train_bundle
    from training.gitio.command import repo_root
    from training.metrics import load_stopwords
    from training.mining.miner import mine_repository
    from training.models import check_base
    from training.progress import JsonProgress, json_progress, progress_phase, summary_table
    from training.report import write_bundle_report

    if json_output and progress_format == "json":
        raise click.UsageError(
            "--json and --progress json both print on stdout: use one "
            "(the last line of --progress json is the result)"
        )
    console = _console(json_output or progress_format == "json")
    root = repo_root(repo)
    out = (out or default_bundle_dir(root)).expanduser().absolute()
    data = out.parent / f".{out.name}.data"
    # Everything that can be refused is refused before the history is mined.
    check_base(base)
    ensure_replaceable(out)
    words = load_stopwords(stopwords) if stopwords else None
    events = contextlib.nullcontext(None)
    if progress_format == "json" and os.environ.get("RANK", "0") == "0":
        sink = JsonProgress(sys.stdout, [("mine", 1.0), ("train", 7.0), ("evaluate", 2.0)])
        events = json_progress(sink)
    with events as sink, _dropped_when_interrupted(data):
        with progress_phase("mine"):
            stats = mine_repository(root, data, mining, console=console)
        console.print(
            summary_table(stats, title=f"mined {stats['repo']}: {stats['commits']} commits")
        )
        with progress_phase("train"):
            bundle = train_bundle(data, base, out, options, console=console)
        if os.environ.get("RANK", "0") != "0":
            return
        with progress_phase("evaluate"):
            report = evaluate_bundle(
                bundle,
                data,
                device=options.device,
                limit=eval_limit,
                stopwords=words,
                console=console,
            )
        write_bundle_report(bundle, report)
        if sink is not None:  # the report on stderr, the result as the last JSON line
            console.print(f"bundle ready: {bundle}  (report: {bundle / 'report.md'})")
            sink.finish(bundle=str(bundle), data=str(data), metrics=report.metrics())
            return
    if json_output:
        click.echo(
            json.dumps(
                {
                    "bundle": str(bundle),
                    "data": str(data),
                    "mined": stats,
                    "metrics": report.metrics(),
                },
                indent=2,
            )
        )
    else:
        _print_report(console, report)
        console.print(f"[bold green]bundle ready:[/] {bundle}  (report: {bundle / 'report.md'})")


@contextlib.contextmanager
def _dropped_when_interrupted(data: Path):
    """A run interrupted (Ctrl-C, or an editor's cancel) leaves nothing new beside the
    bundle: the dataset it mined is removed unless an earlier run had left one there."""
    existed = data.exists()
    try:
        yield
    except (KeyboardInterrupt, SystemExit):  # SIGINT, SIGTERM (handle_stop_signals)
        if not existed and os.environ.get("RANK", "0") == "0":
            import shutil

            shutil.rmtree(data, ignore_errors=True)
        raise


@main.command("dismiss", short_help="Dismiss a finding for good (or bring it back).")
@click.argument("hunk_ids", metavar="HUNK_ID...", nargs=-1, required=True)
@REPO_OPTION
@click.option("--reason", default=None, help="Why, kept with the dismissal.")
@click.option("--undismiss", is_flag=True, help="Bring dismissed findings back.")
@user_errors
def dismiss(hunk_ids: tuple[str, ...], repo: Path, reason: str | None, undismiss: bool) -> None:
    """Dismiss findings by their hunk id (`hunk_id` in `review --json`, SARIF's
    hunkwiseHunk/v1 fingerprint): every clone of this history, the CLI and the editor
    alike, stop showing them until the hunk changes. Nothing is written into the
    repository.

    \b
    Examples:
      hunkwise review --json | jq -r '.findings[].hunk_id'
      hunkwise dismiss 0f3c9a1b2d4e5f60 --reason "intended"
      hunkwise dismiss 0f3c9a1b2d4e5f60 --undismiss
    """
    from training.gitio.command import repo_root
    from training.suppressions import DismissalStore

    store = DismissalStore.for_repo(repo_root(repo))
    for hunk_id in hunk_ids:
        changed = (
            store.undismiss(hunk_id)
            if undismiss
            else store.dismiss(hunk_id, path=None, by=None, reason=reason)
        )
        verb = "brought back" if undismiss else "dismissed"
        click.echo(f"{hunk_id}: {verb}" if changed else f"{hunk_id}: already {verb}")


@main.command("serve-command", short_help="Print the command that serves a bundle from an engine.")
@click.argument("bundle", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--engine",
    "engine",
    type=click.Choice(["vllm", "sglang", "llama-cpp"]),
    default="vllm",
    show_default=True,
    help="vllm or sglang (a GPU server for a team), or llama-cpp (llama-cpp-python on a "
    "CPU: GGUF files are written first).",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Where the engine listens.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--base",
    "base",
    default=None,
    metavar="PATH",
    help="Where the engine machine reads the base from [default: the bundle's base/, or "
    "its hub id].",
)
@click.option(
    "--gguf-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="llama-cpp: where to write the GGUF files [default: BUNDLE-gguf beside it].",
)
@click.option("--json", "json_output", is_flag=True, help="Print the command as JSON.")
@user_errors
def serve_command_(
    bundle: Path,
    engine: str,
    host: str,
    port: int,
    base: str | None,
    gguf_dir: Path | None,
    json_output: bool,
) -> None:
    """Print the exact command that serves BUNDLE's adapters from an inference engine, and
    the settings each editor needs to use it. A bundle the engine would refuse (DoRA,
    modules_to_save, a rank vLLM does not take, LoRA outside the linear layers) gets the
    reasons instead, and exit status 2.

    \b
    Examples:
      hunkwise serve-command ~/.cache/hunkwise/bundles/myrepo-1a2b3c4d
      hunkwise serve-command BUNDLE --engine llama-cpp --port 8080
    """
    from training.serving import serve_command

    command = serve_command(bundle, engine, host=host, port=port, base=base, gguf_dir=gguf_dir)
    if json_output:
        click.echo(
            json.dumps(
                {
                    "engine": command.engine,
                    "argv": list(command.argv),
                    "command": command.shell,
                    "settings": command.settings,
                    "notes": list(command.notes),
                },
                indent=2,
            )
        )
        return
    click.echo(command.shell)
    click.echo("# each editor's settings:", err=True)
    for key, value in command.settings.items():
        click.echo(f"#   {key} = {json.dumps(value)}", err=True)
    for note in command.notes:
        click.echo(f"# {note}", err=True)


@main.command("bundles", short_help="List the bundles in the cache directory.")
@click.option("--json", "json_output", is_flag=True, help="Print the list as JSON on stdout.")
@user_errors
def bundles(json_output: bool) -> None:
    """List the bundles in the cache directory: base, adapters, date, size, the history they
    were trained on, and their report's headline figures (served ROC AUC, share flagged).

    \b
    Example:
      hunkwise bundles --json | jq '.[0].path'
    """
    from training.bundle import cache_root, list_bundles

    found = list_bundles()
    if json_output:
        click.echo(json.dumps([b.to_dict() for b in found], indent=2))
        return
    if not found:
        click.echo(
            f"no bundles in {cache_root()}; make one with `hunkwise train-from-repo . --base tiny`"
        )
        return
    for b in found:
        if b.problem:
            click.echo(f"{b.path}\n    unreadable: {b.problem}")
            continue
        auc = "n/a" if b.served_roc_auc is None else f"{b.served_roc_auc:.3f}"
        flagged = "n/a" if b.flagged_share is None else f"{100 * b.flagged_share:.1f}%"
        click.echo(
            f"{b.path}\n    {b.history or '?'} · base {b.base} · {','.join(b.tasks)} · "
            f"{b.created[:16].replace('T', ' ')} · {b.size_bytes / 1e6:.1f} MB · "
            f"ROC AUC {auc}, flags {flagged}"
            + (f" · {b.evidence_items} evidence items" if b.evidence_items else "")
        )


@main.command("status", short_help="Say what a review here would use, and why.")
@REPO_OPTION
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--device", default=None, help="The device a review would ask for.")
@click.option("--json", "json_output", is_flag=True, help="Print the status as JSON on stdout.")
@user_errors
def status(repo: Path, bundle: Path | None, device: str | None, json_output: bool) -> None:
    """Say what `hunkwise review` here would use, and why: the repository and its
    configuration, the bundle (which, and why that one), its adapters and threshold, the
    device, and the torch and CUDA versions.

    \b
    Example:
      hunkwise status --json
    """
    from importlib import metadata

    from training.bundle import BundleError, find_default_bundle, read_manifest
    from training.config import read_repo_config
    from training.gitio.command import repo_root

    root = repo_root(repo)
    repo_config = read_repo_config(root)
    config = repo_config.checked()
    if bundle is not None:
        why = "--bundle"
    elif config.get("bundle"):
        bundle, why = Path(config["bundle"]), f"`bundle` in {repo_config.source}"
    else:
        bundle, why = find_default_bundle(root)
    report: dict = {
        "repository": str(root),
        "configuration": str(repo_config.source) if repo_config.source else None,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "bundle": str(bundle),
        "bundle_reason": why,
    }
    try:
        manifest = read_manifest(bundle)
    except BundleError as error:
        report["bundle_problem"] = str(error)
    else:
        calibration = manifest.calibration or {}
        report |= {
            "base": manifest.base_model,
            "adapters": list(manifest.tasks),
            "threshold": config.get("threshold", calibration.get("threshold", 0.5)),
            "threshold_reason": (
                f"{repo_config.source}"
                if "threshold" in config
                else "the bundle's (chosen on its valid split)"
                if calibration
                else "0.5 (the bundle has no calibration)"
            ),
            "evidence_items": (manifest.evidence or {}).get("items"),
            "skipped_tasks": manifest.training.get("skipped_tasks") or {},
        }
    wanted = device or config.get("device", "auto")
    report["engine"] = config.get("engine", "local")
    report["device_asked"] = wanted
    try:
        report["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        report["torch"] = None
    if report["torch"] is not None:
        import torch

        from training.models import resolve_device

        report["cuda"] = torch.version.cuda
        report["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
        try:
            report["device"] = resolve_device(wanted)
        except HunkwiseError as error:
            report["device"], report["device_problem"] = None, str(error)
    if json_output:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"{key.replace('_', ' '):<{width}}  {shown}")


@main.command("eval", short_help="Evaluate a bundle on a dataset's test split.")
@click.option("--bundle", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="A dataset written by `hunkwise mine` or `hunkwise import` [default: the one the "
    "bundle was trained on, e.g. the hidden .<bundle>.data folder train-from-repo keeps].",
)
@click.option(
    "--eval-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Evaluate at most the newest N test records per task, 0 for all "
    "[default: every rnp record; for rcg, cr and edit all on a GPU, 60 on CPU].",
)
@click.option(
    "--stopwords",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Stop-word list for RCG BLEU-4 without stop words.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Flag hunks whose served score is at least this [default: the bundle's threshold, "
    "chosen on the valid split; 0.5 for bundles without one].",
)
@DEVICE_OPTION
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per rnp test record: id, p (the served score), p_adapter, "
    "label (1 = yes).",
)
@click.option("--no-write", is_flag=True, help="Do not write report files into the bundle.")
@click.option("--json", "json_output", is_flag=True, help="Print the metrics as JSON on stdout.")
@user_errors
def eval_(
    bundle: Path,
    data_dir: Path | None,
    eval_limit: int | None,
    stopwords: Path | None,
    threshold: float | None,
    device: str,
    predictions: Path | None,
    no_write: bool,
    json_output: bool,
) -> None:
    """Evaluate a bundle on a dataset's test split (metrics beside the baselines).

    \b
    Examples:
      hunkwise eval --bundle ~/.cache/hunkwise/3f2a1c0d9e8b            # its own dataset
      hunkwise eval --bundle B --data data/flask --predictions p.jsonl --json
    """
    from training.evaluate import evaluate_bundle
    from training.metrics import load_stopwords
    from training.output_dirs import check_writable
    from training.report import write_bundle_report

    if data_dir is None:
        from training.bundle import read_manifest

        trained_on = read_manifest(bundle).training.get("data")
        if not isinstance(trained_on, str) or not Path(trained_on).is_dir():
            raise HunkwiseError(
                f"the dataset {bundle} was trained on is gone ({trained_on}); pass --data DIR "
                "(a dataset from `hunkwise mine`)"
            )
        data_dir = Path(trained_on)
    if not data_dir.is_dir():
        raise HunkwiseError(f"no dataset at {data_dir}; create one with `hunkwise mine`")
    if predictions is not None:
        check_writable(predictions.absolute().parent, "folder of --predictions")
    if not no_write:
        check_writable(bundle, "bundle directory (pass --no-write to write no report)")
    console = _console(json_output)
    words = load_stopwords(stopwords) if stopwords else None
    report = evaluate_bundle(
        bundle,
        data_dir,
        device=device,
        limit=eval_limit,
        stopwords=words,
        threshold=threshold,
        predictions=predictions,
        console=console,
    )
    if predictions is not None and report.rnp is None:
        raise HunkwiseError(
            f"no rnp predictions to write to {predictions}: the bundle has no rnp adapter or "
            "the dataset no rnp test records"
        )
    if not no_write:
        write_bundle_report(bundle, report)
    if json_output:
        click.echo(json.dumps(report.metrics(), indent=2))
    else:
        _print_report(console, report)


if __name__ == "__main__":  # `python -m training.cli`, as `accelerate launch -m` runs it
    main()
