"""The bundle contract: manifest validation with messages that say what to do, the
base/template check (what the adapters were trained on against the base loaded), and
atomic replacement (a failing or killed writer leaves the previous bundle loadable; its
leftovers are cleaned by the next writer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo
from training.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    Manifest,
    bundle_writer,
    check_compatible,
    clean_stale,
    default_bundle_dir,
    ensure_replaceable,
    find_default_bundle,
    legacy_bundle_dir,
    read_manifest,
    write_manifest,
)
from training.tasks import ADAPTER_TASKS, TEMPLATE_NAME

ROOT = Path(__file__).resolve().parents[1]


def fill_bundle(directory: Path, tasks=ADAPTER_TASKS, base: str = "bundle:base", tag: str = ""):
    """Write a structurally complete bundle: adapter files (contents are not what these
    tests are about; test_finetune loads real ones with peft), base/, the manifest."""
    for task in tasks:
        (directory / task).mkdir(parents=True)
        (directory / task / "adapter_config.json").write_text("{}")
        (directory / task / "adapter_model.safetensors").write_bytes(b"")
    if base == "bundle:base":
        (directory / "base").mkdir()
    manifest = Manifest(
        base_model=base, tasks={task: task for task in tasks}, training={"tag": tag}
    )
    write_manifest(directory, manifest)
    return manifest


def make_bundle(path: Path, **kwargs) -> Path:
    path.mkdir(parents=True)
    fill_bundle(path, **kwargs)
    return path


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_manifest_round_trip(tmp_path):
    bundle = make_bundle(tmp_path / "b", tag="first")
    manifest = read_manifest(bundle)
    assert manifest.format == BUNDLE_FORMAT and manifest.template == TEMPLATE_NAME
    assert manifest.tasks == {task: task for task in ADAPTER_TASKS}
    assert manifest.label_words == {"yes": "yes", "no": "no"}
    assert manifest.stage1 is None and manifest.training == {"tag": "first"}
    data = json.loads((bundle / "manifest.json").read_text())
    assert next(iter(data)) == "format"
    assert Manifest.from_dict(data) == manifest
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []


def _break(bundle: Path, how: str) -> None:
    manifest = bundle / "manifest.json"
    data = json.loads(manifest.read_text())
    if how == "no manifest":
        manifest.unlink()
    elif how == "bad json":
        manifest.write_text("{not json")
    elif how == "unknown format":
        manifest.write_text(json.dumps({**data, "format": "something-else"}))
    elif how == "newer format":
        manifest.write_text(json.dumps({**data, "format": "hunkwise-bundle/9"}))
    elif how == "no tasks key":
        del data["tasks"]
        manifest.write_text(json.dumps(data))
    elif how == "missing adapter dir":
        os.rename(bundle / "rcg", bundle / "elsewhere")
    elif how == "missing weights":
        (bundle / "cr" / "adapter_model.safetensors").unlink()
    elif how == "pickle weights":
        os.rename(bundle / "cr" / "adapter_model.safetensors", bundle / "cr" / "adapter_model.bin")
    elif how == "missing base":
        (bundle / "base").rmdir()
    elif how == "unknown task":
        manifest.write_text(json.dumps({**data, "tasks": {**data["tasks"], "lint": "rnp"}}))
    elif how == "escaping path":
        manifest.write_text(json.dumps({**data, "tasks": {"rnp": "../rnp"}}))
    elif how == "stage1 missing":
        manifest.write_text(json.dumps({**data, "stage1": "stage1"}))
    elif how == "wrong type":
        manifest.write_text(json.dumps({**data, "tasks": ["rnp"]}))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no manifest", "not a hunkwise bundle \\(no manifest.json\\)"),
        ("bad json", "cannot be read"),
        ("unknown format", "format 'something-else'.*not a hunkwise bundle"),
        ("newer format", "'hunkwise-bundle/9' is not supported.*upgrade hunkwise"),
        ("no tasks key", "has no 'tasks'"),
        ("missing adapter dir", "rcg/, which is missing"),
        ("missing weights", "cr/adapter_model.safetensors is missing"),
        ("pickle weights", "only safetensors weights are loaded"),
        ("missing base", "base/ is missing"),
        ("unknown task", "unknown task 'lint'"),
        ("escaping path", "must be inside the bundle"),
        ("stage1 missing", "stage-1 adapter in stage1/, which is missing"),
        ("wrong type", "'tasks' has the wrong type"),
    ],
)
def test_read_manifest_says_what_is_wrong(tmp_path, how, message):
    bundle = make_bundle(tmp_path / "b")
    _break(bundle, how)
    with pytest.raises(BundleError, match=message) as error:
        read_manifest(bundle)
    if how not in ("escaping path",):
        assert "hunkwise" in str(error.value)


def test_read_manifest_missing_bundle_says_how_to_train(tmp_path):
    with pytest.raises(BundleError, match="hunkwise train-from-repo"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        read_manifest(tmp_path / "file")


def test_check_compatible_names_both_sides(tmp_path):
    manifest = Manifest(base_model="Qwen/Qwen2.5-Coder-1.5B-Instruct", tasks={"rnp": "rnp"})
    check_compatible(manifest, "Qwen/Qwen2.5-Coder-1.5B-Instruct", TEMPLATE_NAME)
    with pytest.raises(BundleError) as error:
        check_compatible(manifest, "meta-llama/Llama-3.2-1B", TEMPLATE_NAME)
    assert "Qwen/Qwen2.5-Coder-1.5B-Instruct" in str(error.value)
    assert "meta-llama/Llama-3.2-1B" in str(error.value)
    with pytest.raises(BundleError) as error:
        check_compatible(manifest, manifest.base_model, "chatml-v2")
    assert TEMPLATE_NAME in str(error.value) and "chatml-v2" in str(error.value)
    # Two spellings of one local directory are one base.
    (tmp_path / "model").mkdir()
    local = Manifest(base_model=str(tmp_path / "model"), tasks={"rnp": "rnp"})
    check_compatible(local, str(tmp_path / "." / "model"), TEMPLATE_NAME)


def _trained_on(adapter: Path, base: str) -> None:
    config = adapter / "adapter_config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": base})
    )


def test_check_compatible_reads_what_each_adapter_was_trained_on(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tasks=("rnp", "rcg"))
    manifest = read_manifest(bundle)
    check_compatible(manifest, "bundle:base", TEMPLATE_NAME, bundle=bundle)  # configs say nothing
    for task in ("rnp", "rcg"):
        _trained_on(bundle / task, "bundle:base")
    check_compatible(manifest, "bundle:base", TEMPLATE_NAME, bundle=bundle)
    # The bundle's base/ is the same base whichever way it is named.
    check_compatible(manifest, str(bundle / "base"), TEMPLATE_NAME, bundle=bundle)
    # A manifest pointed at another base than the adapters were trained on.
    (tmp_path / "other").mkdir()
    moved = Manifest(base_model=str(tmp_path / "other"), tasks=manifest.tasks)
    with pytest.raises(BundleError) as error:
        check_compatible(moved, moved.base_model, TEMPLATE_NAME, bundle=bundle)
    message = str(error.value)
    assert "the rnp adapter" in message
    assert "'bundle:base'" in message and str(bundle / "base") in message
    assert str(tmp_path / "other") in message


@pytest.fixture(scope="module")
def other_base(tmp_path_factory) -> Path:
    """A base of another shape than the session bundle's (hidden 64 against 128): the
    stand-in bundle's base/ (tests/untrained_bundle.py)."""
    from tests.untrained_bundle import build_stand_in_bundle

    return build_stand_in_bundle(tmp_path_factory.mktemp("other"), stage1=False) / "base"


def _copy_on_base(bundle: Path, target: Path, base: str) -> Path:
    import shutil

    shutil.copytree(bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["base_model"] = base
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_a_bundle_pointed_at_another_base_is_refused_naming_both(
    tiny_bundle: Path, other_base: Path, tmp_path: Path
) -> None:
    from training.engine import Engine

    moved = _copy_on_base(tiny_bundle, tmp_path / "moved", str(other_base))
    with pytest.raises(BundleError) as error:
        Engine.load(moved, device="cpu")
    message = str(error.value)
    # What the adapters were trained on (the bundle's own base/) and what would be loaded.
    assert "was trained on base model 'bundle:base'" in message
    assert str(moved / "base") in message
    assert f"but '{other_base}' is loaded" in message


def test_adapters_that_do_not_fit_the_base_are_refused(
    tiny_bundle: Path, other_base: Path, tmp_path: Path
) -> None:
    # The stand-in's adapters do not name their base (peft saved them from a model built in
    # memory); on a base of another shape, peft's size mismatch becomes a BundleError.
    from training.engine import Engine

    moved = _copy_on_base(other_base.parent, tmp_path / "moved", str(tiny_bundle / "base"))
    with pytest.raises(BundleError) as error:
        Engine.load(moved, device="cpu")
    message = str(error.value)
    assert f"adapter in {moved} does not fit the loaded base model '{tiny_bundle / 'base'}'" in (
        message
    )
    assert "does not name the base it was trained on" in message


def test_writer_replaces_the_previous_bundle(tmp_path):
    final = make_bundle(tmp_path / "bundle", tag="old")
    with bundle_writer(final) as staging:
        assert staging.parent == final.parent and staging != final
        assert read_manifest(final).training["tag"] == "old"
        fill_bundle(staging, tasks=("rnp",), tag="new")
    manifest = read_manifest(final)
    assert manifest.training["tag"] == "new" and list(manifest.tasks) == ["rnp"]
    assert not (final / "rcg").exists()
    assert siblings(final) == []
    assert oct(final.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_writer_without_atomic_exchange(tmp_path, monkeypatch):
    import training.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_exchange", lambda a, b: False)
    final = make_bundle(tmp_path / "bundle", tag="old")
    with bundle_writer(final) as staging:
        fill_bundle(staging, tag="new")
    assert read_manifest(final).training["tag"] == "new"
    assert siblings(final) == []


def test_writer_creates_a_new_bundle(tmp_path):
    final = tmp_path / "deep" / "bundle"
    with bundle_writer(final) as staging:
        fill_bundle(staging, tag="new")
    assert read_manifest(final).training["tag"] == "new"


def test_an_error_while_writing_keeps_the_old_bundle(tmp_path):
    final = make_bundle(tmp_path / "bundle", tag="old")
    with pytest.raises(RuntimeError, match="disk on fire"), bundle_writer(final) as staging:
        (staging / "rnp").mkdir()
        raise RuntimeError("disk on fire")
    assert read_manifest(final).training["tag"] == "old"
    assert siblings(final) == []


def test_a_killed_writer_keeps_the_old_bundle_and_is_cleaned_up(tmp_path):
    final = make_bundle(tmp_path / "bundle", tag="old")
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from training.bundle import bundle_writer
        with bundle_writer(Path({str(final)!r})) as staging:
            (staging / "rnp").mkdir()
            (staging / "rnp" / "adapter_config.json").write_text("{{}}")
            print("writing", flush=True)
            time.sleep(120)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.stdout.close()
    assert read_manifest(final).training["tag"] == "old"
    leftovers = siblings(final)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".bundle.tmp-{writer.pid}-")
    with bundle_writer(final) as staging:
        assert siblings(final) == [staging.name]
        fill_bundle(staging, tag="new")
    assert read_manifest(final).training["tag"] == "new"
    assert siblings(final) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_clean_stale_restores_a_bundle_moved_aside_by_a_killed_writer(tmp_path):
    final = tmp_path / "bundle"
    # Killed between "old bundle aside" and "new bundle in" (no atomic exchange).
    aside = make_bundle(tmp_path / f".bundle.old-{_dead_pid()}-abcd", tag="old")
    leftover = tmp_path / f".bundle.tmp-{_dead_pid()}-efgh"
    leftover.mkdir()
    clean_stale(final)
    assert read_manifest(final).training["tag"] == "old"
    assert not aside.exists() and not leftover.exists()


def test_clean_stale_leaves_live_writers_alone(tmp_path):
    final = make_bundle(tmp_path / "bundle")
    live = tmp_path / f".bundle.tmp-{os.getppid()}-live"
    live.mkdir()
    assert clean_stale(final) == []
    assert live.exists()


def test_writer_refuses_to_replace_what_is_not_a_bundle(tmp_path):
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.py").write_text("print('hi')\n")
    with pytest.raises(BundleError, match="not a hunkwise bundle"), bundle_writer(precious):
        pass
    assert (precious / "main.py").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        ensure_replaceable(tmp_path / "afile")
    (tmp_path / "empty").mkdir()
    ensure_replaceable(tmp_path / "empty")


def test_default_bundle_dir(tmp_path, monkeypatch):
    """Keyed by the history (its root commit): every clone and worktree shares one bundle;
    another history, or a repository without commits, gets its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = GitRepo(tmp_path / "a" / "flask")
    root = repo.commit("Start", app_dot_py="x = 1\n")
    repo.commit("More", app_dot_py="x = 2\n")
    path = default_bundle_dir(repo.path)
    assert path == tmp_path / "cache" / "hunkwise" / root[:12]
    clone = tmp_path / "b" / "other-name"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True, env=repo.env)
    worktree = tmp_path / "wt"
    subprocess.run(
        ["git", "worktree", "add", "-q", str(worktree)], cwd=repo.path, check=True, env=repo.env
    )
    assert default_bundle_dir(clone) == default_bundle_dir(worktree) == path
    assert default_bundle_dir(repo.path / "..") != path  # not a repository
    other = GitRepo(tmp_path / "c" / "flask")
    other.commit("Another start", app_dot_py="y = 1\n")
    assert default_bundle_dir(other.path) != path
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    assert default_bundle_dir(empty) == legacy_bundle_dir(empty)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_bundle_dir(repo.path).parent == Path.home() / ".cache" / "hunkwise"


def test_a_bundle_at_the_legacy_location_is_still_found(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = GitRepo(tmp_path / "flask")
    repo.commit("Start", app_dot_py="x = 1\n")
    legacy = legacy_bundle_dir(repo.path)
    name, digest = legacy.name.rsplit("-", 1)
    assert name == "flask" and len(digest) == 8
    assert find_default_bundle(repo.path)[0] == default_bundle_dir(repo.path)
    legacy.mkdir(parents=True)
    write_manifest(legacy, Manifest(base_model="bundle:base"))
    path, why = find_default_bundle(repo.path)
    assert path == legacy and "older hunkwise" in why
    default_bundle_dir(repo.path).mkdir(parents=True)
    write_manifest(default_bundle_dir(repo.path), Manifest(base_model="bundle:base"))
    assert find_default_bundle(repo.path)[0] == default_bundle_dir(repo.path)
