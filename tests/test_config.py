"""A repository's own configuration (hunkwise.toml, pyproject.toml's [tool.hunkwise]):
read, checked by the same rules as the server's settings, applied by ``hunkwise review``
under its options and by the language server under the editor's settings."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.lsp_harness import STAND_IN_SERVER
from bench.lsp_harness.documents import open_document
from bench.lsp_harness.stand_in_engine import write_stand_in_bundle
from tests.gitrepo import GitRepo
from tests.lsp_session import published, session, status
from training.cli import main
from training.config import RepoConfig, read_repo_config
from training.errors import HunkwiseError


def test_which_file_and_what_it_says(tmp_path: Path) -> None:
    assert read_repo_config(tmp_path) == RepoConfig({})
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert read_repo_config(tmp_path) == RepoConfig({})
    (tmp_path / "pyproject.toml").write_text(
        '[tool.hunkwise]\nthreshold = 0.4\nexclude = ["docs/**"]\nbundle = "../b"\n'
    )
    config = read_repo_config(tmp_path)
    assert config.source == tmp_path / "pyproject.toml"
    assert config.checked() == {
        "threshold": 0.4,
        "exclude": ("docs/**",),
        "bundle": str(tmp_path / "../b"),
    }
    # hunkwise.toml wins, with top-level keys.
    (tmp_path / "hunkwise.toml").write_text('diffBase = "origin/main"\ndevice = "CPU"\n')
    assert read_repo_config(tmp_path).checked() == {"diffBase": "origin/main", "device": "cpu"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold = 2\n", "'threshold' must be a number between 0 and 1 (got 2)"),
        ("thresold = 0.5\n", "unknown key 'thresold'; the keys are bundle, device, threshold"),
        ("exclude = [1]\n", "'exclude' must be a list of glob patterns"),
        ("threshold = \n", "is not valid TOML: Invalid value (at line 1, column 13)"),
    ],
)
def test_a_bad_value_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "hunkwise.toml").write_text(text)
    with pytest.raises(HunkwiseError) as raised:
        read_repo_config(tmp_path).checked()
    assert str(raised.value).startswith(str(tmp_path / "hunkwise.toml"))
    assert message in str(raised.value)


# -- the command line ------------------------------------------------------------------


@pytest.fixture(scope="module")
def configured(tmp_path_factory, stand_in_bundle: Path) -> tuple[GitRepo, Path]:
    repo = GitRepo(tmp_path_factory.mktemp("configured") / "repo")
    repo.commit("Add app and docs", app_dot_py="x = 1\n", docs__guide_dot_md="# Guide\n")
    repo.commit("Edit both", app_dot_py="x = 2\n", docs__guide_dot_md="# The guide\n")
    return repo, stand_in_bundle


def _review(repo: GitRepo, *args: str):
    return CliRunner().invoke(
        main, ["review", "HEAD", "--repo", str(repo.path), "--no-comments", *args]
    )


def test_review_applies_the_configuration_under_its_options(configured) -> None:
    repo, bundle = configured
    config = repo.path / "hunkwise.toml"
    try:
        config.write_text(f'bundle = "{bundle}"\nthreshold = 0.0\nexclude = ["docs/**"]\n')
        result = _review(repo, "--format", "json")
        assert result.exit_code == 1, result.output
        document = json.loads(result.stdout)
        assert [f["path"] for f in document["findings"]] == ["app.py"]
        assert document["skipped"] == [
            {"path": "docs/guide.md", "reason": "excluded", "hunk_id": None}
        ]
        # Options win: --threshold over the file's; --exclude adds to its globs.
        result = _review(repo, "--threshold", "1")
        assert result.exit_code == 0 and result.stdout == ""
        assert "0 flagged" in result.stderr and "1 excluded" in result.stderr
        result = _review(repo, "--exclude", "*.py")
        assert result.exit_code == 0 and "2 excluded" in result.stderr
        # The summary says whose threshold it was.
        config.write_text(f'bundle = "{bundle}"\nthreshold = 1.0\n')
        assert "threshold 1.00, hunkwise.toml" in _review(repo).stderr
        config.write_text('threshold = "high"\n')
        result = _review(repo)
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"hunkwise: error: {config}: 'threshold' must be a number between 0 and 1 (got 'high')"
        )
    finally:
        config.unlink()


# -- the language server ---------------------------------------------------------------


async def _ready(client) -> dict:
    for _ in range(1000):
        answer = await status(client)
        if answer["state"] == "ready":
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError(f"the server never got ready: {answer}")


@pytest.mark.asyncio
async def test_the_server_takes_the_configuration_under_the_editors(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add app", app_dot_py="x = 1\n")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    # The stand-in scores a hunk adding print( at 0.9: over 0.5, under 0.95.
    (repo.path / "pyproject.toml").write_text(
        f'[tool.hunkwise]\nbundle = "{bundle}"\nthreshold = 0.95\ndebounceMs = 10\n'
    )
    uri = (repo.path / "app.py").as_uri()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    async with session(repo.path, {}, STAND_IN_SERVER, env=env) as client:
        answer = await _ready(client)
        assert answer["bundle"] == str(bundle) and answer["threshold"] == 0.95
    async with session(repo.path, {"threshold": 0.5}, STAND_IN_SERVER, env=env) as client:
        answer = await _ready(client)
        assert answer["bundle"] == str(bundle) and answer["threshold"] == 0.5
        open_document(client, uri, "print(1)\nx = 1\n")
        found = await published(client, uri, 1, check=lambda p: bool(p.diagnostics))
        assert len(found.diagnostics) == 1


def test_a_dismissed_finding_stays_dismissed_until_shown(
    configured, tmp_path: Path, monkeypatch
) -> None:
    repo, bundle = configured
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["--bundle", str(bundle), "--threshold", "0", "--format", "json"]
    before = json.loads(_review(repo, *args).stdout)["findings"]
    [app] = [finding for finding in before if finding["path"] == "app.py"]
    result = CliRunner().invoke(
        main, ["dismiss", app["hunk_id"], "--repo", str(repo.path), "--reason", "intended"]
    )
    assert result.exit_code == 0 and result.output.strip() == f"{app['hunk_id']}: dismissed"
    after = json.loads(_review(repo, *args).stdout)
    assert [f["path"] for f in after["findings"]] == ["docs/guide.md"]
    assert {"path": "app.py", "reason": "dismissed", "hunk_id": app["hunk_id"]} in after["skipped"]
    shown = json.loads(_review(repo, *args, "--show-dismissed").stdout)["findings"]
    assert len(shown) == len(before)
    assert not list(repo.path.glob("**/*dismissed*"))  # nothing written into the repository
    back = CliRunner().invoke(
        main, ["dismiss", app["hunk_id"], "--repo", str(repo.path), "--undismiss"]
    )
    assert back.exit_code == 0 and "brought back" in back.output
    assert len(json.loads(_review(repo, *args).stdout)["findings"]) == len(before)
    bad = CliRunner().invoke(main, ["dismiss", "not-a-hunk", "--repo", str(repo.path)])
    assert bad.exit_code == 2 and "hunkwise: error:" in bad.output


def test_diff_base_sets_what_uncommitted_changes_are_compared_with(configured) -> None:
    repo, bundle = configured
    config = repo.path / "hunkwise.toml"
    repo.write("app.py", "x = 3\n")
    repo.git("add", "app.py")
    repo.write("app.py", "x = 4\n")
    args = ["--bundle", str(bundle), "--threshold", "0", "--format", "json"]
    try:
        added = {}
        for base in ("HEAD", "INDEX", "HEAD~1"):
            config.write_text(f'diffBase = "{base}"\n')
            result = CliRunner().invoke(main, ["review", "--repo", str(repo.path), *args])
            [finding] = [f for f in json.loads(result.stdout)["findings"] if f["path"] == "app.py"]
            added[base] = [line for line in finding["hunk_text"].splitlines() if line[:1] in "+-"]
        assert added["HEAD"] == ["-x = 2", "+x = 4"]
        assert added["INDEX"] == ["-x = 3", "+x = 4"]
        assert added["HEAD~1"] == ["-x = 1", "+x = 4"]
    finally:
        config.unlink()
        repo.git("checkout", "HEAD", "--", "app.py")
