"""Fuzz the language server for longer than tests/test_server_fuzz.py does: the random bad
traffic of bench/lsp_harness/fuzz_messages.py (thousands of well-framed messages to one server
running the STAND-IN engine, which must answer each request once and stay up), then short
sessions that each end in broken framing (each must exit 1 with its reason logged), and
the counts of what came back.

    python bench/lsp_fuzz.py [--messages 5000] [--seed 1] [--frame-breaks 16] [--keep]

The exit status is 1 when a rule was broken; each broken rule is printed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lsp_bench import machine  # noqa: E402
from bench.lsp_harness.fuzz_messages import run_fuzz, summary  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--frame-breaks", type=int, default=16, help="sessions ended by bad framing"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (server logs)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lsp-fuzz-"))
    try:
        report = run_fuzz(scratch, args.seed, args.messages, args.frame_breaks)
    finally:
        if args.keep:
            print(f"scratch and server logs: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"`python bench/lsp_fuzz.py --messages {args.messages} --seed {args.seed} "
        f"--frame-breaks {args.frame_breaks}` on {date.today().isoformat()}, {machine()}"
    )
    for line in summary(report):
        print(line)
    print("messages by kind: " + ", ".join(f"{k} {n}" for k, n in report.kinds.most_common()))
    for problem in report.problems:
        print(f"BROKEN: {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
