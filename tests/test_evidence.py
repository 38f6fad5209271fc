"""The evidence index: what it holds, how it is stored (no pickle, checksummed), how a file
from another bundle or a damaged one is refused by name while review goes on, and the
evidence a real review prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.learnable_repo import TrainedBundle
from training.bundle import BundleError, read_manifest
from training.evidence import (
    EVIDENCE_DIR,
    INDEX_FILE,
    MATRIX_FILE,
    EvidenceIndex,
    function_of,
    load_evidence,
    tokens,
)
from training.review import finding_message
from training.tasks import RCG, RNP, Record, RecordMeta


def hunk(body: str, header: str = "def port(value):") -> str:
    return f"@@ -1,2 +1,3 @@ {header}\n" + "\n".join(body.splitlines())


def fixed(text: str, path: str, commit: str, time: str, subject: str) -> Record:
    meta = RecordMeta(
        repo="net",
        commit=commit * 8,
        fix_commit=commit[::-1] * 8,
        path=path,
        time=time,
        fix_subject=subject,
        fix_time=time.replace("-01T", "-09T"),
    )
    return Record.make(RNP, text, "yes", meta)


PORT = hunk(" def port(value):\n+    if value > 65535:\n+        raise ValueError(value)")
HOST = hunk("+    host = parse_host(address)\n+    return host.lower()", "def host(address):")
RECORDS = [
    fixed(PORT, "net/util.py", "aaaaa", "2024-01-01T10:00:00+00:00", "Fix the port bound"),
    fixed(HOST, "net/host.py", "bbbbb", "2024-02-01T10:00:00+00:00", "Lower hosts once"),
    # The same hunk again (a cherry-pick): indexed once.
    fixed(PORT, "net/util.py", "ccccc", "2024-03-01T10:00:00+00:00", "Again"),
    # Not evidence: a hunk nothing fixed, and a history rcg record (its rnp twin is).
    Record.make(RNP, hunk("+    return 1"), "no", RecordMeta(path="net/x.py")),
    Record.make(RCG, PORT, "Fix the port bound", RecordMeta(path="net/util.py")),
    # An imported review comment is.
    Record.make(
        RCG,
        hunk("+    port = int(text)", "def read(text):"),
        "Validate before converting.",
        RecordMeta(source="codereviewer"),
    ),
]


def test_tokens_and_functions() -> None:
    assert function_of(PORT) == "def port(value):"
    assert function_of("@@ -1 +1 @@\n+x") is None
    words = tokens("@@ -1 +1 @@ def parseHost(raw_url):\n+    parsedPort = 8080\n x = 1", "a/b.py")
    assert {"parseHost", "parse", "host", "raw_url", "parsedPort", "8080"} <= set(words)
    assert "x" not in words  # context lines do not count
    assert words.count("path:a") == words.count("path:py") > 1


def test_what_the_index_holds_and_finds() -> None:
    index = EvidenceIndex.build(RECORDS)
    assert index is not None and len(index) == 3
    assert [item["fix_subject"] for item in index.items] == [
        "Fix the port bound",
        "Lower hosts once",
        "Validate before converting.",
    ]
    assert index.items[2]["source"] == "codereviewer" and index.items[2]["fix_commit"] is None
    query = hunk(
        " def port(value):\n+    if value > 65535 or value < 0:\n+        raise ValueError"
    )
    [found] = index.neighbours([(query, "net/util.py")])
    best = max(found, key=lambda e: e.similarity)
    assert best.path == "net/util.py" and best.fix_subject == "Fix the port bound"
    assert best.similarity > 0.5
    assert best.summary == (
        "a change like this in net/util.py (def port(value):) (aaaaaaa, 2024-01-01, "
        f"similarity {best.similarity:.2f}) was fixed by aaaaaaa (2024-01-09): "
        "Fix the port bound"
    )
    # Nothing alike: no evidence rather than the least unlike.
    assert index.neighbours([(hunk("+    zebra = quux", "fn zoo()"), "zoo/zebra.rs")]) == [[]]
    # At most k, newest first.
    everything = index.neighbours([(PORT + "\n" + HOST, "net/util.py")], k=2, floor=0.0)[0]
    assert len(everything) == 2
    assert [e.time for e in everything] == sorted((e.time for e in everything), reverse=True)
    assert EvidenceIndex.build(RECORDS[3:5]) is None


def test_the_message_falls_back_to_history() -> None:
    index = EvidenceIndex.build(RECORDS)
    found = [max(index.neighbours([(PORT, "net/util.py")])[0], key=lambda e: e.similarity)]
    assert finding_message(0.91, "Check the bound.", found) == "Check the bound."
    assert finding_message(0.91, "", found) == (
        "From history: Fix the port bound (fixed by aaaaaaa in a change like this, p=0.91)"
    )
    assert finding_message(0.91, None, ()) == "This change may need review (p=0.91)"


def test_stored_without_pickle_and_checksummed(tmp_path: Path) -> None:
    index = EvidenceIndex.build(RECORDS)
    entry = index.save(tmp_path)
    assert entry["items"] == 3 and set(entry["files"]) == {INDEX_FILE, MATRIX_FILE}
    with np.load(tmp_path / EVIDENCE_DIR / MATRIX_FILE, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    again = EvidenceIndex.load(tmp_path, entry)
    query = [(PORT, "net/util.py"), (HOST, "net/host.py")]
    assert again.neighbours(query) == index.neighbours(query)


def test_files_from_another_bundle_or_damaged_are_refused_by_name(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    entry = EvidenceIndex.build(RECORDS).save(ours)
    EvidenceIndex.build(RECORDS[1:]).save(theirs)
    shutil.copy(theirs / EVIDENCE_DIR / MATRIX_FILE, ours / EVIDENCE_DIR / MATRIX_FILE)
    with pytest.raises(BundleError, match=rf"{MATRIX_FILE}: not the file this bundle"):
        EvidenceIndex.load(ours, entry)
    index, problem = load_evidence(ours, entry)
    assert index is None and str(ours / EVIDENCE_DIR / MATRIX_FILE) in problem
    (ours / EVIDENCE_DIR / MATRIX_FILE).unlink()
    with pytest.raises(BundleError, match=rf"{MATRIX_FILE}: missing"):
        EvidenceIndex.load(ours, entry)
    # A matrix whose shape does not fit its index, checksums made to agree.
    entry = EvidenceIndex.build(RECORDS).save(ours)
    items = ours / EVIDENCE_DIR / INDEX_FILE
    data = json.loads(items.read_text())
    data["items"].pop()
    items.write_text(json.dumps(data))
    from training.evidence import _sha256

    entry["files"][INDEX_FILE] = _sha256(items)
    with pytest.raises(BundleError, match="does not fit"):
        EvidenceIndex.load(ours, entry)
    assert load_evidence(ours, None) == (None, "the bundle has no evidence index")


# -- in a real bundle and a real review --------------------------------------------------


def _review(repo: Path, bundle: Path) -> subprocess.CompletedProcess:
    args = ["review", "HEAD", "--repo", str(repo), "--bundle", str(bundle), "--threshold", "0"]
    return subprocess.run(
        [sys.executable, "-c", "from training.cli import main; main()", *args, "--no-comments"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def debug_clone(trained: TrainedBundle, tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("evidence") / "clone"
    env = trained.repo.env
    subprocess.run(["git", "clone", "-q", str(trained.repo.path), str(clone)], check=True, env=env)
    module = clone / "app" / "module_2.py"
    module.write_text(
        module.read_text() + 'def count_token(value):\n    """Count token."""\n'
        '    print("debug count_token", value)\n    result = len(value)\n    return result\n'
    )
    subprocess.run(["git", "commit", "-qam", "Add count token"], cwd=clone, check=True, env=env)
    return clone


def test_a_review_prints_the_fixed_changes_like_the_finding(
    trained: TrainedBundle, debug_clone: Path
) -> None:
    manifest = read_manifest(trained.bundle)
    assert manifest.evidence is not None and manifest.evidence["items"] > 0
    result = _review(debug_clone, trained.bundle)
    assert result.returncode == 1, result.stderr
    finding, *evidence = result.stdout.splitlines()
    assert finding.startswith("app/module_2.py:") and "From history:" in finding
    assert evidence and all(line.startswith("    a change like this in app/") for line in evidence)
    assert all("debug print" in line.lower() for line in evidence), evidence


def test_review_goes_on_without_a_damaged_index(
    trained: TrainedBundle, debug_clone: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained.bundle, bundle)
    damaged = bundle / EVIDENCE_DIR / INDEX_FILE
    damaged.write_text(damaged.read_text().replace("app/", "lib/", 1))
    result = _review(debug_clone, bundle)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("app/module_2.py:") and "    a change" not in result.stdout
    [warning] = [line for line in result.stderr.splitlines() if "evidence left out" in line]
    assert str(damaged) in warning and "Traceback" not in result.stderr
