"""Benchmark: ``hunkwise mine`` (labels included) against PyDriller's bare traversal of
the same history, reading every modified file's diff. Side by side in one run, each in
its own process, with wall time and peak memory (RSS).

    python bench/mine_bench.py /path/to/flask-clone [--runs 3]

Get a real history first, e.g. ``git clone https://github.com/pallets/flask``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.gitio.command import read_only_env

PYDRILLER = r"""
import json, sys, time
from pydriller import Repository
start = time.perf_counter()
commits = hunks = files = 0
for commit in Repository(sys.argv[1], only_no_merge=True).traverse_commits():
    commits += 1
    for modified in commit.modified_files:
        files += 1
        diff = modified.diff
        hunks += sum(1 for line in diff.split("\n") if line.startswith("@@ "))
print(json.dumps({"commits": commits, "files": files, "hunks": hunks,
                  "seconds": time.perf_counter() - start}))
"""


def run(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB, stdout of one child process."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(command)}")
        out.seek(0)
        return wall, usage.ru_maxrss // 1024, out.read().decode()


def git_log_seconds(repo: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo), "log", "-p", "HEAD"],
        stdout=subprocess.DEVNULL,
        env={**os.environ, **read_only_env()},
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list] = {"hunkwise": [], "pydriller": [], "git log -p": []}
    with tempfile.TemporaryDirectory() as tmp:
        # PyDriller writes blame.markUnblamableLines into the configuration of the
        # repository it opens: give it a throwaway clone sharing the objects.
        clone = Path(tmp) / "pydriller.git"
        subprocess.run(
            ["git", "clone", "--bare", "--shared", "--quiet", str(args.repo.resolve()), str(clone)],
            check=True,
        )
        for n in range(args.runs):
            out = Path(tmp) / f"mined{n}"
            wall, rss, stdout = run(
                [
                    sys.executable,
                    "-c",
                    "from training.cli import main; main()",
                    "mine",
                    str(args.repo),
                    "--out",
                    str(out),
                    "--json",
                ]
            )
            stats = json.loads(stdout)
            results["hunkwise"].append((wall, rss))
            wall_p, rss_p, stdout_p = run([sys.executable, "-c", PYDRILLER, str(clone)])
            pyd = json.loads(stdout_p)
            results["pydriller"].append((wall_p, rss_p))
            results["git log -p"].append((git_log_seconds(args.repo), 0))
            print(
                f"run {n + 1}: hunkwise {wall:.2f} s ({rss} MB), "
                f"pydriller {wall_p:.2f} s ({rss_p} MB), ratio {wall_p / wall:.2f}x",
                flush=True,
            )
    best = {name: min(r[0] for r in runs) for name, runs in results.items()}
    peak = {name: max(r[1] for r in runs) for name, runs in results.items()}
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"history: {stats['commits']} commits ({stats['merge_commits']} merges), "
        f"head {stats['head'][:12]}"
    )
    for name in results:
        print(
            f"  {name:<11} best of {args.runs}: {best[name]:6.2f} s"
            + (f", peak RSS {peak[name]} MB" if peak[name] else "")
        )
    print(f"  speed-up (pydriller / hunkwise): {best['pydriller'] / best['hunkwise']:.2f}x")
    print(
        f"hunks: pydriller {pyd['hunks']} in {pyd['commits']} non-merge commits "
        f"({pyd['files']} file diffs); hunkwise {stats['hunks_total']} in non-merge commits, "
        f"{stats['hunks']} in files kept by the filters, {stats['candidate_hunks']} candidates"
    )
    print(f"skipped: {stats['skipped']}")
    print(f"records: {stats['records']}")
    print(f"rnp labels: {stats['rnp_labels']} (horizon {stats['horizon']})")
    for task, splits in stats["splits"].items():
        print(
            f"  {task}: "
            + ", ".join(
                f"{s} {v['records']}" + (f" {v['labels']}" if "labels" in v else "")
                for s, v in splits.items()
            )
        )


if __name__ == "__main__":
    main()
