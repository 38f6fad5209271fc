"""Mine several real histories, one after the other, and print one row each: commits,
seconds, peak memory, fix commits, labels, records and what was skipped. Every history
must mine without an error; the exit status says whether one failed.

    python bench/mine_histories.py /path/to/clone [/path/to/clone ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from training.mining.miner import MineOptions, content_digest, mine_repository
repo, out = Path(sys.argv[1]), Path(sys.argv[2])
before = content_digest(repo / ".git") if (repo / ".git").is_dir() else None
start = time.perf_counter()
stats = mine_repository(repo, out, MineOptions())
stats["wall"] = time.perf_counter() - start
stats["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
stats["untouched"] = before is None or before == content_digest(repo / ".git")
print(json.dumps(stats))
"""


def mine_one(repo: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="hunkwise-bench-") as out:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(repo), out], capture_output=True, text=True
        )
    if result.returncode != 0:
        return {"repo": repo.name, "error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", type=Path)
    args = parser.parse_args()
    failed = 0
    for repo in args.repos:
        stats = mine_one(repo)
        if "error" in stats:
            failed += 1
            print(f"{repo.name}: FAILED {stats['error']}")
            continue
        labels = stats["rnp_labels"]
        records = stats["records"]
        print(
            f"{stats['repo']}: {stats['commits']} commits in {stats['wall']:.1f} s, "
            f"{stats['peak_mb']:.0f} MB, untouched={stats['untouched']}; "
            f"fix commits {stats['fix_commits']}; rnp yes {labels['yes']} / no {labels['no']} "
            f"/ censored {labels['censored']}; rcg {records['rcg']}, cr {records['cr']}, "
            f"edit {records['edit']}; uninformative {stats['uninformative_messages']}; "
            f"skipped {stats['skipped']}"
        )
    print(f"{len(args.repos) - failed} mined, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
