"""Benchmark: the language server's diff of an editor buffer against its base, per
keystroke, two ways, on Python files of this repository (about 200, 1,000 and 5,000 lines;
the largest is several of its modules one after the other):

- in process: ``training.xdiff.diff_texts(base, buffer)``, what the server does;
- through git: the buffer written to a temporary file (the base written once per file),
  ``git diff --no-index`` with mining's options run on the two, and its output parsed with
  mining's parser (``training.gitio.log.parse_git_diff``): what the server would do instead.

A "keystroke" types one more character of a new line inserted in the file (three places:
a quarter, half and three quarters down). Every keystroke checks that both ways give the
same hunks. Prints p50 and p95 per file size and way, and their ratio.

    python bench/xdiff_bench.py [--rev HEAD] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.gitio.command import GIT_CONFIG, read_only_env  # noqa: E402
from training.gitio.log import DIFF_OPTIONS, parse_git_diff  # noqa: E402
from training.xdiff import diff_texts  # noqa: E402

SIZES = (200, 1000, 5000)
TYPED = "        total += compute(item, scale=2)  # typed"
WARM_UP = 5


def tracked_python(rev: str) -> dict[str, str]:
    """Every Python file of the repository at ``rev``, by path (read from git, so the
    figures do not depend on uncommitted edits)."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", rev],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    names = [name for name in listed if name.endswith(".py")]
    return {
        name: subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for name in names
    }


def file_of_size(files: dict[str, str], lines: int) -> tuple[str, str]:
    """(name, text) of the file closest to ``lines`` lines; when no file is within a quarter
    of it, the largest files one after the other, cut at ``lines`` lines."""
    name, text = min(files.items(), key=lambda item: abs(item[1].count("\n") - lines))
    if abs(text.count("\n") - lines) <= lines // 4:
        return name, text
    pieces, names = [], []
    for name, text in sorted(files.items(), key=lambda item: -item[1].count("\n")):
        pieces.append(text)
        names.append(name)
        if sum(piece.count("\n") for piece in pieces) >= lines:
            break
    joined = "".join(pieces).split("\n")[:lines]
    return " + ".join(names), "\n".join(joined) + "\n"


def keystrokes(base: str) -> list[str]:
    """The buffer after each keystroke: ``TYPED`` typed one character at a time on a new
    line, at three places of the file."""
    lines = base.split("\n")
    buffers = []
    for where in (len(lines) // 4, len(lines) // 2, 3 * len(lines) // 4):
        for typed in range(1, len(TYPED) + 1):
            edited = [*lines[:where], TYPED[:typed], *lines[where:]]
            buffers.append("\n".join(edited))
    return buffers


def git_diff(tmp: Path, buffer: str, env: dict[str, str]) -> bytes:
    """The buffer written out and diffed against the base file by git."""
    (tmp / "b.py").write_text(buffer, encoding="utf-8")
    done = subprocess.run(
        ["git", *GIT_CONFIG, "diff", "--no-index", *DIFF_OPTIONS, "a.py", "b.py"],
        cwd=tmp,
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode not in (0, 1):  # 1: the files differ
        raise SystemExit(f"git diff --no-index failed: {done.stderr.decode().strip()}")
    return done.stdout


def spawn_floor_ms(env: dict[str, str], runs: int = 50) -> float:
    """p50 of starting git for nothing (``git --version``): what any git call costs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["git", "--version"], env=env, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(base: str) -> dict:
    buffers = keystrokes(base)
    in_process: list[float] = []
    through_git: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hunkwise-xdiff-") as tmp:
        # No user or system configuration (diff drivers, attributes) may change git's hunks.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            **read_only_env(),
            "HOME": tmp,
            "XDG_CONFIG_HOME": tmp,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        work = Path(tmp) / "files"
        work.mkdir()
        (work / "a.py").write_text(base, encoding="utf-8")
        for index, buffer in enumerate([*buffers[:WARM_UP], *buffers]):
            start = time.perf_counter()
            ours = diff_texts(base, buffer, "b.py", old_path="a.py")
            middle = time.perf_counter()
            (theirs,) = parse_git_diff(git_diff(work, buffer, env))
            end = time.perf_counter()
            if ours != theirs.hunks:
                raise SystemExit(f"keystroke {index}: diff_texts and git differ")
            if index >= WARM_UP:
                in_process.append((middle - start) * 1000)
                through_git.append((end - middle) * 1000)
    return {
        "lines": base.count("\n"),
        "keystrokes": len(buffers),
        "in_process_ms": {
            "p50": statistics.median(in_process),
            "p95": percentile(in_process, 0.95),
        },
        "git_ms": {"p50": statistics.median(through_git), "p95": percentile(through_git, 0.95)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the revision whose files are diffed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    files = tracked_python(args.rev)
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    results = []
    for size in SIZES:
        name, base = file_of_size(files, size)
        result = {"file": name, **measure(base)}
        results.append(result)
        if not args.json:
            a, b = result["in_process_ms"], result["git_ms"]
            print(
                f"{result['lines']:>5} lines ({name}), {result['keystrokes']} keystrokes, same "
                f"hunks: diff_texts p50 {a['p50']:.2f} ms, p95 {a['p95']:.2f} ms; "
                f"git diff --no-index p50 {b['p50']:.2f} ms, p95 {b['p95']:.2f} ms; "
                f"git / diff_texts at p50 {b['p50'] / a['p50']:.1f}x",
                flush=True,
            )
    floor = spawn_floor_ms({**os.environ, **read_only_env()})
    if args.json:
        summary = {"git": git_version.strip(), "git_spawn_p50_ms": floor, "results": results}
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"starting git for nothing (git --version): p50 {floor:.2f} ms; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {git_version.strip()}, "
            f"load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
