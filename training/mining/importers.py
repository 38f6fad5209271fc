"""Importers: published review data (the CodeReviewer dataset, Alpaca / Code Alpaca
instructions, GitHub pull-request review comments) -> hunkwise records, written in the
layout ``hunkwise mine`` writes, so the paper's setting can be trained and evaluated as is.

Real files are messy: a row that cannot be read is skipped and counted (its line logged),
the rest imported; an import fails only when nothing in a file can be read."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from training.errors import HunkwiseError
from training.hunks import language_of
from training.mining.dataset import dedupe, split_by_time, write_dataset
from training.output_dirs import check_writable
from training.progress import progress_bar
from training.tasks import (
    CR,
    INSTRUCT,
    LABEL_NO,
    LABEL_YES,
    RCG,
    RNP,
    SPLITS,
    Record,
    RecordMeta,
    cr_input,
)

#: Malformed line numbers kept per file in ``stats.json`` and logged to the console.
MAX_LOGGED_LINES = 20

#: When the same record comes from files of several splits, the copy in the first of these
#: splits is kept: published evaluation sets stay whole and nothing of them leaks into training.
_DEDUPE_PRIORITY: tuple[str | None, ...] = ("test", "valid", "train", None)

_SPLIT_WORDS: dict[str, str] = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
}


class SkippedRow(Exception):
    """A row that gives no records; ``reason`` is what ``stats.json`` counts it under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


class MalformedRow(SkippedRow):
    """A row that cannot be read (bad JSON, a missing field, a wrong type): logged by line."""


# -- fields ---------------------------------------------------------------------------------


def _as_object(row: object) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise MalformedRow("not_an_object", f"expected a JSON object, got {type(row).__name__}")
    return row


def _text(row: Mapping[str, Any], key: str, *, allow_empty: bool = False) -> str:
    """A required string field."""
    if key not in row or row[key] is None:
        raise MalformedRow("missing_field", f"no {key!r}")
    value = row[key]
    if not isinstance(value, str):
        raise MalformedRow("wrong_type", f"{key!r} is {type(value).__name__}, not a string")
    if not allow_empty and not value.strip():
        raise MalformedRow("empty_field", f"{key!r} is empty")
    return value


def _optional_text(row: Mapping[str, Any], key: str) -> str | None:
    """A string field that only feeds ``meta``: anything else is as good as absent."""
    value = row.get(key)
    return (value.strip() or None) if isinstance(value, str) else None


# -- CodeReviewer ---------------------------------------------------------------------------


def _codereviewer_label(row: Mapping[str, Any], msg: str) -> str | None:
    # As CodeReviewer's own loader (read_review_examples): a non-empty msg means review needed.
    if msg:
        return LABEL_YES
    if "y" not in row:
        return None
    y = row["y"]
    if isinstance(y, str):
        y = y.strip()
    if y in (1, "1") and not isinstance(y, bool):
        return LABEL_YES
    if y in (0, "0") and not isinstance(y, bool):
        return LABEL_NO
    raise MalformedRow("wrong_type", f"'y' is {y!r}, not 1 or 0")


def _codereviewer_language(row: Mapping[str, Any]) -> str | None:
    # CodeReviewer writes extensions ("py", ".cs", "rb"); hunkwise names languages ("python").
    code = _optional_text(row, "lang")
    if code is None:
        return None
    code = code.lstrip(".").lower()
    return language_of(f"file.{code}") or code


def codereviewer_records(row: object) -> list[Record]:
    """Records of one CodeReviewer row, recognised by its fields.

    ``patch`` + ``y`` (1/0, int or string) or a non-empty ``msg`` -> rnp (a non-empty msg
    means yes); a non-empty ``msg`` -> rcg (input the patch, output the comment);
    ``old`` + ``new`` + ``comment`` -> cr (input ``cr_input(comment, old)``, output new).
    Patches are kept as published (they start with ``@@``).
    """
    row = _as_object(row)
    meta = RecordMeta(
        source="codereviewer",
        repo=_optional_text(row, "proj") or _optional_text(row, "repo"),
        lang=_codereviewer_language(row),
    )
    records: list[Record] = []
    msg = _text(row, "msg", allow_empty=True).strip() if row.get("msg") is not None else ""
    if "patch" in row or msg:
        patch = _text(row, "patch")
        label = _codereviewer_label(row, msg)
        if label is not None:
            records.append(Record.make(RNP, patch, label, meta))
        if msg:
            records.append(Record.make(RCG, patch, msg, meta))
    refinement = ("old", "new", "comment")
    if any(key in row for key in refinement):
        comment = _text(row, "comment").strip()
        old = _text(row, "old", allow_empty=True)
        new = _text(row, "new", allow_empty=True)
        if not old.strip() and not new.strip():
            raise MalformedRow("empty_field", "'old' and 'new' are both empty")
        old, new = _without_diff_prefix(old), _without_diff_prefix(new)
        records.append(Record.make(CR, cr_input(comment, old), new, meta))
    if records:
        return records
    if "patch" in row:
        # A pre-training row: a diff with neither a label nor a comment.
        raise SkippedRow("unlabelled", "a patch without 'y' or 'msg'")
    raise MalformedRow("missing_field", "none of 'patch' + 'y', 'msg', 'old' + 'new' + 'comment'")


# -- Alpaca ---------------------------------------------------------------------------------


def alpaca_records(row: object) -> list[Record]:
    """One ``instruct`` record from an Alpaca / Code Alpaca row (instruction, input, output).

    ``input`` may be absent (empty); other fields (EditEval's ``test``, ``task_id`` ...)
    are ignored. The instruction is stripped; input and output are code, kept verbatim.
    """
    row = _as_object(row)
    instruction = _text(row, "instruction").strip()
    input = _text(row, "input", allow_empty=True) if row.get("input") is not None else ""
    output = _text(row, "output")
    meta = RecordMeta(source="alpaca")
    return [Record.make(INSTRUCT, input, output, meta, instruction=instruction)]


def _without_diff_prefix(code: str) -> str:
    """CodeReviewer's refinement ``old``/``new`` keep each line's diff prefix (its loader
    drops the first character of every line); hunkwise's code sides have none. Lines are
    stripped of their prefix only when every non-empty line has one."""
    lines = code.split("\n")
    if all(line[:1] in (" ", "+", "-") for line in lines if line):
        return "\n".join(line[1:] for line in lines)
    return code


# -- GitHub review comments -----------------------------------------------------------------

_PULL_URL = re.compile(r"/repos/([^/]+/[^/]+)/pulls/")


def _utc_time(value: str | None) -> str | None:
    # GitHub writes "2011-04-14T16:00:49Z"; mined records carry "+00:00" offsets.
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def github_review_records(row: object) -> list[Record]:
    """rcg (input the ``diff_hunk``, output the ``body``) and rnp = yes for that hunk, from
    one pull-request review comment as the GitHub REST API returns it.

    Replies (``in_reply_to_id`` set) answer a comment rather than review the code, and bots
    (``user.type`` "Bot") are not reviewers: both are skipped. The diff hunk is kept as
    GitHub sends it (``@@`` header first, ending at the commented line).
    """
    row = _as_object(row)
    if row.get("in_reply_to_id") is not None:
        raise SkippedRow("reply")
    user = row.get("user")
    if isinstance(user, Mapping) and user.get("type") == "Bot":
        raise SkippedRow("bot")
    hunk = _text(row, "diff_hunk")
    body = _text(row, "body").strip()
    path = _optional_text(row, "path")
    url = _optional_text(row, "pull_request_url") or _optional_text(row, "url") or ""
    repo = _PULL_URL.search(url)
    meta = RecordMeta(
        source="github-review",
        repo=repo.group(1) if repo else None,
        commit=_optional_text(row, "commit_id"),
        path=path,
        lang=language_of(path) if path else None,
        time=_utc_time(_optional_text(row, "created_at")),
    )
    return [Record.make(RCG, hunk, body, meta), Record.make(RNP, hunk, LABEL_YES, meta)]


#: Format name (the CLI's FORMAT argument) -> its row parser.
ROW_PARSERS: dict[str, Callable[[object], list[Record]]] = {
    "codereviewer": codereviewer_records,
    "alpaca": alpaca_records,
    "github-review": github_review_records,
}
FORMATS: tuple[str, ...] = tuple(ROW_PARSERS)


# -- reading files --------------------------------------------------------------------------


def split_of(path: Path) -> str | None:
    """The split a file name names as a word part ("msg-test.jsonl", "train.json",
    "ref_dev.jsonl"), or None when it names none, or more than one."""
    words = re.split(r"[^a-z]+", Path(path).name.lower())
    named = {_SPLIT_WORDS[word] for word in words if word in _SPLIT_WORDS}
    return named.pop() if len(named) == 1 else None


class _LineNumbers:
    """Line numbers of increasing offsets in one text, counted incrementally."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0
        self.line = 1

    def __call__(self, offset: int) -> int:
        if offset < self.offset:
            self.offset, self.line = 0, 1
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


_WHITESPACE = re.compile(r"\s*")
# After a syntax error: inside an array, the next "}, {" or "][" (gh --paginate's page
# boundary); at the top level, the next line that starts a value.
_RESYNC_IN_ARRAY = re.compile(r"\}\s*,\s*(?=\{)|\]\s*(?=\[)")
_RESYNC_TOP = re.compile(r"\n(?=[\[{])")


def _json_values(text: str, advance: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    """Rows of a JSON document: the elements of a top-level array, of several concatenated
    arrays (as ``gh api --paginate`` writes them), or concatenated top-level objects.

    Yields ``(line, value)``; a syntax error yields ``(line, MalformedRow)`` and reading
    resumes at the next element that can be found.
    """
    decoder = json.JSONDecoder()
    line_of = _LineNumbers(text)
    pos = _WHITESPACE.match(text, 0).end()
    done = 0
    in_array = False
    while pos < len(text):
        advance(pos - done)
        done = pos
        char = text[pos]
        if char == "[" and not in_array:
            in_array = True
            pos = _WHITESPACE.match(text, pos + 1).end()
            continue
        if in_array and char in ",]":
            in_array = char == ","
            pos = _WHITESPACE.match(text, pos + 1).end()
            continue
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as error:
            where = getattr(error, "pos", pos)
            detail = getattr(error, "msg", "nested too deeply")
            yield line_of(where), MalformedRow("bad_json", detail)
            resync = (_RESYNC_IN_ARRAY if in_array else _RESYNC_TOP).search(text, where)
            if resync is None:
                break
            pos = resync.end()
            in_array = in_array and text[pos] == "{"
            continue
        yield line_of(pos), value
        pos = _WHITESPACE.match(text, end).end()
    else:
        if in_array:
            yield line_of(len(text)), MalformedRow("bad_json", "unterminated array")
    advance(len(text) - done)


def _json_lines(path: Path, advance: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    """Rows of a JSONL file, one JSON value per line; a line holding an array gives its
    elements. A line that is not JSON yields ``(line, MalformedRow)``."""
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            advance(len(raw))
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as error:
                yield number, MalformedRow("bad_json", getattr(error, "msg", "not JSON"))
                continue
            if isinstance(value, list):
                for element in value:
                    yield number, element
            else:
                yield number, value


def read_rows(
    path: Path, advance: Callable[[int], None] = lambda n: None
) -> Iterator[tuple[int, object]]:
    """``(line, row)`` for each row of a JSON or JSONL file, whichever it is; a row that is
    not JSON comes as a :class:`MalformedRow`. ``advance(n)`` is told of bytes read."""
    with open(path, "rb") as probe:
        head = probe.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    first_line = head.split("\n", 1)[0].strip()
    # A whole document (an array, or pretty-printed objects as jq prints them) or JSONL.
    if first_line.startswith("[") or first_line == "{":
        text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
        yield from _json_values(text, advance)
    else:
        yield from _json_lines(path, advance)


# -- importing ------------------------------------------------------------------------------


@dataclass
class FileReport:
    """What one imported file gave: rows read, records made, rows skipped by reason."""

    path: Path
    split: str | None
    rows: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    malformed_lines: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "split": self.split,
            "rows": self.rows,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines,
        }


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise HunkwiseError(f"cannot import {path}: no such file")
    if path.is_dir():
        raise HunkwiseError(f"cannot import {path}: it is a directory; name the data files")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise HunkwiseError(f"cannot read {path}: {error.strerror or error}") from error


def _log(console: Console | None, message: str) -> None:
    if console is not None:
        console.print(message, style="yellow", markup=False, highlight=False, soft_wrap=True)


def import_file(
    fmt: str, path: Path, console: Console | None = None, *, progress: bool = True
) -> tuple[FileReport, list[Record]]:
    """Parse one file of format ``fmt`` into records, skipping and counting what cannot be
    read (malformed rows logged to ``console``); raises :class:`HunkwiseError` when the file
    is unreadable or nothing in it reads. ``progress=False``: no progress bar (stage 1 of a
    training run reads its Alpaca data so, inside the run's own progress)."""
    parse = ROW_PARSERS[fmt]
    path = Path(path)
    _check_readable(path)
    report = FileReport(path=path, split=split_of(path))
    records: list[Record] = []
    first_error = ""
    try:
        size = path.stat().st_size
        bar = (
            progress_bar(console, f"{fmt}: {path.name}", size)
            if progress
            else nullcontext(lambda n: None)
        )
        with bar as advance:
            for line, row in read_rows(path, advance):
                report.rows += 1
                try:
                    if isinstance(row, SkippedRow):
                        raise row
                    made = parse(row)
                except SkippedRow as skipped:
                    report.skipped[skipped.reason] += 1
                    if not isinstance(skipped, MalformedRow):
                        continue
                    report.malformed += 1
                    message = f"{path}:{line}: skipped, {skipped.reason}: {skipped}"
                    first_error = first_error or f"line {line}: {skipped}"
                    if len(report.malformed_lines) < MAX_LOGGED_LINES:
                        report.malformed_lines.append(line)
                        _log(console, message)
                    continue
                records.extend(made)
    except OSError as error:
        raise HunkwiseError(f"cannot read {path}: {error.strerror or error}") from error
    if report.malformed > MAX_LOGGED_LINES:
        _log(console, f"{path}: {report.malformed - MAX_LOGGED_LINES} more malformed rows")
    if report.rows == 0:
        raise HunkwiseError(f"nothing to import in {path}: the file has no rows")
    if report.malformed == report.rows:
        raise HunkwiseError(
            f"nothing in {path} could be read as {fmt} data ({report.malformed} malformed "
            f"rows; {first_error}); is it the right format?"
        )
    report.records = len(records)
    return report, records


def _dedupe_by_priority(
    by_split: dict[str | None, list[Record]],
) -> tuple[dict[str | None, list[Record]], int]:
    kept: list[Record] = []
    dropped = 0
    deduped: dict[str | None, list[Record]] = {}
    for split in _DEDUPE_PRIORITY:
        before = len(kept)
        kept, dropped_here = dedupe([*kept, *by_split.get(split, [])])
        deduped[split] = kept[before:]
        dropped += dropped_here
    return deduped, dropped


def _assign_splits(by_split: dict[str | None, list[Record]]) -> dict[str, dict[str, list[Record]]]:
    """Task -> split -> records: named splits as named, the rest split by time per task."""
    tasks: dict[str, dict[str, list[Record]]] = {}
    for split in _DEDUPE_PRIORITY:
        for record in by_split.get(split, []):
            tasks.setdefault(record.task, {name: [] for name in SPLITS})
    for task, splits in tasks.items():
        for name in SPLITS:
            splits[name].extend(r for r in by_split.get(name, []) if r.task == task)
        unsplit = [r for r in by_split.get(None, []) if r.task == task]
        for name, records in split_by_time(unsplit).items():
            splits[name].extend(records)
    return tasks


def import_files(
    fmt: str, paths: Sequence[Path], out: Path, console: Console | None = None
) -> dict:
    """Import ``paths`` (all of format ``fmt``) into ``out`` as ``hunkwise mine`` would
    write them: ``out/<task>/{train,valid,test}.jsonl`` and ``out/stats.json``.

    A file whose name names a split (``msg-test.jsonl``, ``train.json``) goes to that
    split; the others are split by time (rows without a time in file order, oldest first).
    Duplicates are dropped, keeping the test copy before valid before train. Every file
    is read before anything is written, so a failed import leaves ``out`` as it was.
    Returns the stats as written.
    """
    if fmt not in ROW_PARSERS:
        raise HunkwiseError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not paths:
        raise HunkwiseError("no files to import; name one or more data files")
    check_writable(out, "dataset directory")
    started = time.perf_counter()
    paths = [Path(path) for path in paths]
    for path in paths:
        _check_readable(path)
    reports: list[FileReport] = []
    by_split: dict[str | None, list[Record]] = {}
    for path in paths:
        report, records = import_file(fmt, path, console)
        reports.append(report)
        by_split.setdefault(report.split, []).extend(records)
    deduped, duplicates = _dedupe_by_priority(by_split)
    skipped: Counter[str] = Counter()
    for report in reports:
        skipped.update(report.skipped)
    if duplicates:
        skipped["duplicate"] = duplicates
    tasks = _assign_splits(deduped)
    if not tasks:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
        raise HunkwiseError(f"no records to import from {len(paths)} file(s): skipped {reasons}")
    stats = {
        "format": fmt,
        "files": [report.to_dict() for report in reports],
        "rows": sum(report.rows for report in reports),
        "records": sum(len(records) for records in deduped.values()),
        "malformed": sum(report.malformed for report in reports),
        "skipped": dict(sorted(skipped.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }
    try:
        return write_dataset(out, tasks, stats)
    except OSError as error:
        raise HunkwiseError(f"cannot write the dataset to {out}: {error}") from error
