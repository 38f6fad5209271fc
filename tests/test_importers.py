"""Importers: CodeReviewer, Alpaca and GitHub review-comment files -> the dataset layout,
with messy rows skipped and counted; the ``hunkwise import`` command and its exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from training.cli import main
from training.errors import HunkwiseError
from training.mining.dataset import read_split
from training.mining.importers import (
    FORMATS,
    MalformedRow,
    SkippedRow,
    alpaca_records,
    codereviewer_records,
    github_review_records,
    import_files,
    read_rows,
    split_of,
)
from training.tasks import DEFAULT_INSTRUCTIONS, Record, RecordMeta, cr_input

PATCH_A = "@@ -1,2 +1,2 @@ def f():\n-    return 1\n+    return 2\n     pass"
PATCH_B = "@@ -10,3 +10,4 @@ class C:\n     x = 1\n+    y = 2\n     z = 3"
PATCH_C = "@@ -5 +5 @@\n-a = 1\n+a = 10"


def write_jsonl(path: Path, lines: list[object | str]) -> Path:
    """One line per item: objects as JSON, strings written as they are (broken lines)."""
    path.write_text(
        "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines),
        encoding="utf-8",
    )
    return path


def records_of(data: Path, task: str) -> list[Record]:
    return [r for split in ("train", "valid", "test") for r in read_split(data, task, split)]


# -- row parsers ----------------------------------------------------------------------------


def test_codereviewer_quality_row_gives_rnp_with_int_or_string_label():
    meta = RecordMeta(source="codereviewer", repo="apache-iceberg", lang="java")
    row = {"patch": PATCH_A, "y": 1, "msg": "", "lang": "java", "proj": "apache-iceberg"}
    assert codereviewer_records(row) == [
        Record(
            task="rnp",
            instruction=DEFAULT_INSTRUCTIONS["rnp"],
            input=PATCH_A,
            output="yes",
            meta=meta,
        )
    ]
    no = codereviewer_records({**row, "y": "0"})
    assert [(r.task, r.output) for r in no] == [("rnp", "no")]
    assert codereviewer_records({**row, "y": " 1 "})[0].output == "yes"


def test_codereviewer_comment_row_gives_rnp_yes_and_rcg():
    row = {"patch": PATCH_B, "y": 0, "msg": "  Why not a constant? \n", "lang": "py"}
    rnp, rcg = codereviewer_records(row)
    # A non-empty msg means review needed, whatever y says (CodeReviewer's own loader).
    assert (rnp.task, rnp.input, rnp.output) == ("rnp", PATCH_B, "yes")
    assert (rcg.task, rcg.input, rcg.output) == ("rcg", PATCH_B, "Why not a constant?")
    assert rcg.instruction == DEFAULT_INSTRUCTIONS["rcg"]
    assert rcg.meta == RecordMeta(source="codereviewer", lang="python")
    # No y at all: the comment alone labels it.
    assert [r.task for r in codereviewer_records({"patch": PATCH_B, "msg": "nit"})] == [
        "rnp",
        "rcg",
    ]


def test_codereviewer_refinement_row_gives_cr():
    row = {
        "old": "-    x = compute()",
        "new": "+    x = compute() or 0",
        "comment": "Handle None here.",
        "lang": ".cs",
        "repo": "spotify/luigi",
        "oldf": "...",
        "hunk": "@@ ...",
    }
    (record,) = codereviewer_records(row)
    assert record.task == "cr"
    assert record.instruction == DEFAULT_INSTRUCTIONS["cr"]
    # CodeReviewer keeps each line's diff prefix; hunkwise's code sides have none.
    assert record.input == cr_input("Handle None here.", "    x = compute()")
    assert record.output == "    x = compute() or 0"
    assert record.meta == RecordMeta(source="codereviewer", repo="spotify/luigi", lang="csharp")


def test_codereviewer_refinement_without_prefixes_is_kept_as_is():
    row = {"old": "x = 1\ny = 2", "new": "x = 1\ny = 3", "comment": "Use 3."}
    (record,) = codereviewer_records(row)
    assert record.input == cr_input("Use 3.", "x = 1\ny = 2")
    assert record.output == "x = 1\ny = 3"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"y": 1}, "missing_field"),
        ({"patch": PATCH_A, "y": "maybe"}, "wrong_type"),
        ({"patch": PATCH_A, "y": True}, "wrong_type"),
        ({"patch": 42, "y": 1}, "wrong_type"),
        ({"patch": "  ", "y": 1}, "empty_field"),
        ({"msg": "a comment without its patch"}, "missing_field"),
        ({"old": "a", "new": "b"}, "missing_field"),
        ({"old": "", "new": "", "comment": "c"}, "empty_field"),
        (["patch", "y"], "not_an_object"),
        ({"unrelated": 1}, "missing_field"),
    ],
)
def test_codereviewer_malformed_rows(row, reason):
    with pytest.raises(MalformedRow) as raised:
        codereviewer_records(row)
    assert raised.value.reason == reason


def test_codereviewer_patch_without_label_is_skipped_not_malformed():
    with pytest.raises(SkippedRow) as raised:
        codereviewer_records({"patch": PATCH_A, "oldf": "..."})
    assert raised.value.reason == "unlabelled"
    assert not isinstance(raised.value, MalformedRow)


def test_alpaca_row_gives_instruct_and_ignores_extra_fields():
    row = {"instruction": " Sort it. ", "input": "xs = [3, 1]", "output": "sorted(xs)", "test": "t"}
    assert alpaca_records(row) == [
        Record(
            task="instruct",
            instruction="Sort it.",
            input="xs = [3, 1]",
            output="sorted(xs)",
            meta=RecordMeta(source="alpaca"),
        )
    ]
    assert alpaca_records({"instruction": "Say hi.", "output": "hi"})[0].input == ""
    for bad, reason in [
        ({"instruction": "Say hi.", "input": "", "output": ""}, "empty_field"),
        ({"input": "", "output": "x"}, "missing_field"),
        ({"instruction": "x", "input": 3, "output": "y"}, "wrong_type"),
    ]:
        with pytest.raises(MalformedRow) as raised:
            alpaca_records(bad)
        assert raised.value.reason == reason


def github_comment(number: int, **fields: object) -> dict:
    """A pull-request review comment with the fields the GitHub REST API returns."""
    comment = {
        "id": number,
        "url": f"https://api.github.com/repos/octo/widgets/pulls/comments/{number}",
        "pull_request_url": "https://api.github.com/repos/octo/widgets/pulls/7",
        "diff_hunk": PATCH_A,
        "path": "src/widgets/core.py",
        "commit_id": "a" * 40,
        "original_commit_id": "a" * 40,
        "user": {"login": "reviewer", "type": "User"},
        "body": "Return the new value here?",
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "in_reply_to_id": None,
    }
    comment.update(fields)
    return comment


def test_github_review_comment_gives_rcg_and_rnp_yes():
    meta = RecordMeta(
        source="github-review",
        repo="octo/widgets",
        commit="a" * 40,
        path="src/widgets/core.py",
        lang="python",
        time="2024-03-01T10:00:00+00:00",
    )
    assert github_review_records(github_comment(1)) == [
        Record.make("rcg", PATCH_A, "Return the new value here?", meta),
        Record.make("rnp", PATCH_A, "yes", meta),
    ]


def test_github_review_replies_and_bots_are_skipped():
    for row, reason in [
        (github_comment(2, in_reply_to_id=1), "reply"),
        (github_comment(3, user={"login": "lint[bot]", "type": "Bot"}), "bot"),
    ]:
        with pytest.raises(SkippedRow) as raised:
            github_review_records(row)
        assert raised.value.reason == reason
        assert not isinstance(raised.value, MalformedRow)
    with pytest.raises(MalformedRow):
        github_review_records(github_comment(4, body=None))


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("msg-test.jsonl", "test"),
        ("train.jsonl", "train"),
        ("ref_dev.jsonl", "valid"),
        ("cls-valid.json", "valid"),
        ("msg-val-100.jsonl", "valid"),
        ("diff_estimation_1_100.jsonl", None),
        ("latest.jsonl", None),
        ("contest.jsonl", None),
        ("train_test.jsonl", None),
    ],
)
def test_split_of_file_name(name, split):
    assert split_of(Path("data") / name) == split


# -- reading files --------------------------------------------------------------------------


def test_read_rows_handles_paginated_arrays_and_pretty_objects(tmp_path):
    pages = tmp_path / "pages.json"
    pages.write_text('[{"a": 1},\n{"a": 2}]\n[{"a": 3}][\n{"a": 4}]\n')
    assert list(read_rows(pages)) == [(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3}), (4, {"a": 4})]
    pretty = tmp_path / "pretty.json"
    pretty.write_text('{\n  "a": 1\n}\n{\n  "a": 2\n}\n')
    assert list(read_rows(pretty)) == [(1, {"a": 1}), (4, {"a": 2})]


def test_read_rows_skips_broken_elements_and_reports_their_lines(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"a": 1},\n  {"a": oops},\n  {"a": 3},\n  {"a": ')
    rows = list(read_rows(broken))
    assert [(line, row) for line, row in rows if not isinstance(row, MalformedRow)] == [
        (2, {"a": 1}),
        (4, {"a": 3}),
    ]
    assert [line for line, row in rows if isinstance(row, MalformedRow)] == [3, 5]


# -- importing ------------------------------------------------------------------------------


def test_import_codereviewer_files_with_messy_lines(tmp_path):
    quality = write_jsonl(
        tmp_path / "diff_estimation.jsonl",
        [
            {"patch": PATCH_A, "y": 0, "msg": "", "lang": "py", "proj": "p"},
            '{"patch": "@@ -1 +1 @@\\n-x\\n+y", "y": 1',  # truncated line
            "",
            {"patch": PATCH_B, "y": "1", "msg": "Name this.", "lang": "py", "proj": "p"},
            {"patch": PATCH_C, "y": ["1"]},  # wrong type
            {"patch": PATCH_A, "y": 0, "msg": "", "lang": "py", "proj": "p"},  # duplicate
        ],
    )
    comments = write_jsonl(
        tmp_path / "msg-test.jsonl",
        [{"patch": PATCH_C, "y": 1, "msg": "Why ten?", "lang": "go", "proj": "q"}],
    )
    out = tmp_path / "data"
    log = io.StringIO()
    stats = import_files(
        "codereviewer", [quality, comments], out, console=Console(file=log, width=200)
    )

    assert f"{quality}:2: skipped, bad_json" in log.getvalue()
    assert f"{quality}:5: skipped, wrong_type" in log.getvalue()
    assert stats["rows"] == 6
    assert stats["records"] == 5
    assert stats["malformed"] == 2
    assert stats["skipped"] == {"bad_json": 1, "duplicate": 1, "wrong_type": 1}
    assert [f["malformed_lines"] for f in stats["files"]] == [[2, 5], []]
    assert [f["split"] for f in stats["files"]] == [None, "test"]
    assert stats["splits"]["rnp"]["test"] == {"records": 1, "labels": {"yes": 1}}
    assert json.loads((out / "stats.json").read_text()) == stats

    assert [(r.input, r.output) for r in read_split(out, "rcg", "test")] == [(PATCH_C, "Why ten?")]
    rnp = records_of(out, "rnp")
    assert sorted((r.input, r.output) for r in rnp) == sorted(
        [(PATCH_A, "no"), (PATCH_B, "yes"), (PATCH_C, "yes")]
    )
    assert {r.meta.lang for r in rnp} == {"python", "go"}
    assert sorted(p.name for p in out.iterdir()) == ["rcg", "rnp", "stats.json"]


def test_duplicates_across_splits_keep_the_test_copy(tmp_path):
    row = {"patch": PATCH_A, "y": 1}
    train = write_jsonl(tmp_path / "cls-train.jsonl", [row, {"patch": PATCH_B, "y": 0}])
    test = write_jsonl(tmp_path / "cls-test.jsonl", [row])
    stats = import_files("codereviewer", [train, test], tmp_path / "data")
    assert [r.input for r in read_split(tmp_path / "data", "rnp", "test")] == [PATCH_A]
    assert [r.input for r in read_split(tmp_path / "data", "rnp", "train")] == [PATCH_B]
    assert stats["skipped"] == {"duplicate": 1}


def test_import_alpaca_json_list_and_jsonl(tmp_path):
    rows = [
        {"instruction": f"Task {i}.", "input": "" if i % 2 else f"x = {i}", "output": f"y{i}"}
        for i in range(10)
    ]
    listed = tmp_path / "code_alpaca.json"
    listed.write_text(json.dumps([*rows[:5], {"instruction": "No output.", "input": ""}], indent=4))
    lines = write_jsonl(tmp_path / "more.jsonl", rows[5:])
    stats = import_files("alpaca", [listed, lines], tmp_path / "data")

    records = records_of(tmp_path / "data", "instruct")
    # No time and no split in the names: file order, oldest first, 80/10/10.
    assert [r.instruction for r in records] == [f"Task {i}." for i in range(10)]
    assert stats["splits"]["instruct"] == {
        "train": {"records": 8},
        "valid": {"records": 1},
        "test": {"records": 1},
    }
    assert records[0].to_dict() == {
        "id": records[0].id,
        "task": "instruct",
        "instruction": "Task 0.",
        "input": "x = 0",
        "output": "y0",
        "meta": {
            "source": "alpaca",
            "repo": None,
            "commit": None,
            "fix_commit": None,
            "path": None,
            "lang": None,
            "time": None,
            "fix_subject": None,
            "fix_time": None,
        },
    }
    # The malformed element is reported at the line of its opening brace.
    lines = listed.read_text().splitlines()
    assert stats["files"][0]["malformed_lines"] == [
        lines.index('        "instruction": "No output.",')
    ]
    assert stats["skipped"] == {"missing_field": 1}


def test_import_github_review_pages_split_by_time(tmp_path):
    comments = [
        github_comment(
            n,
            diff_hunk=f"@@ -{n} +{n} @@\n-old{n}\n+new{n}",
            body=f"Comment {n}",
            commit_id=f"{n:040d}",
            created_at=f"2024-01-{n:02d}T00:00:00Z",
        )
        for n in range(1, 11)
    ]
    replies = [github_comment(99, in_reply_to_id=1)]
    # Newest first on the first page, as an API listing may order them.
    pages = tmp_path / "comments.json"
    pages.write_text(json.dumps(comments[5:][::-1] + replies) + json.dumps(comments[:5][::-1]))
    stats = import_files("github-review", [pages], tmp_path / "data")

    assert stats["skipped"] == {"reply": 1}
    test = read_split(tmp_path / "data", "rcg", "test")
    assert [(r.output, r.meta.time) for r in test] == [("Comment 10", "2024-01-10T00:00:00+00:00")]
    train = read_split(tmp_path / "data", "rnp", "train")
    assert [r.output for r in train] == ["yes"] * 8
    assert train[0].meta.path == "src/widgets/core.py"
    assert train[0].input == "@@ -1 +1 @@\n-old1\n+new1"


def test_file_where_nothing_can_be_read_fails_and_writes_nothing(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"patch": PATCH_A, "y": 1}])
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json", {"something": "else"}])
    with pytest.raises(HunkwiseError, match=r"nothing in .*bad\.jsonl could be read"):
        import_files("codereviewer", [good, bad], tmp_path / "data")
    assert not (tmp_path / "data").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(HunkwiseError, match="no rows"):
        import_files("codereviewer", [empty], tmp_path / "data")


def test_only_skipped_rows_is_an_error(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([github_comment(2, in_reply_to_id=1)]))
    with pytest.raises(HunkwiseError, match=r"no records to import.*reply 1"):
        import_files("github-review", [replies], tmp_path / "data")


# -- command line ---------------------------------------------------------------------------


def test_cli_formats_match_the_importers():
    command = main.commands["import"]
    assert tuple(command.params[0].type.choices) == FORMATS


def test_cli_import_json_output(tmp_path):
    data = write_jsonl(tmp_path / "msg-valid.jsonl", [{"patch": PATCH_A, "y": 1, "msg": "Why?"}])
    out = tmp_path / "data"
    result = CliRunner().invoke(
        main, ["import", "codereviewer", str(data), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats == json.loads((out / "stats.json").read_text())
    assert stats["splits"]["rcg"]["valid"] == {"records": 1}
    assert [r.output for r in read_split(out, "rcg", "valid")] == ["Why?"]


def test_cli_import_table_output(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Add.", "output": "1 + 1"}])
    result = CliRunner().invoke(main, ["import", "alpaca", str(data), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "instruct" in result.stdout


@pytest.mark.parametrize("case", ["missing", "unreadable"])
def test_cli_import_errors_exit_2_with_one_line(tmp_path, case):
    path = tmp_path / "comments.json"
    if case == "unreadable":
        path.write_text("this is not JSON\n{nor this}\n")
    out = tmp_path / "data"
    result = CliRunner().invoke(main, ["import", "github-review", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("hunkwise: error: ")
    assert result.stderr.count("\n") == 1
    assert str(path) in result.stderr
    assert not out.exists()
