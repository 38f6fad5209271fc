"""A generated repository whose history carries a learnable review pattern: functions
that print a debug line are always fixed a few commits later by "Fix: remove debug
print"; the other functions are never touched again. And a tiny bundle really trained on
it, as the session fixture ``trained`` (tests/conftest.py) makes one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tests.gitrepo import GitRepo

VERBS = ["load", "parse", "check", "store", "render", "merge", "scale", "count", "clean", "sort"]
NOUNS = ["user", "order", "price", "token", "report", "event", "cart", "item", "page", "rule"]
OPS = [
    "value + 1",
    "value * 2",
    "len(value)",
    "value.strip()",
    "sorted(value)",
    "abs(value)",
    "value or None",
    "str(value)",
    "value[::-1]",
    "max(value, 0)",
]
DEBUG_EVERY = 3  # one function in three prints a debug line


def function_source(name: str, op: str, debug: bool) -> list[str]:
    lines = [f"def {name}(value):", f'    """{name.replace("_", " ").capitalize()}."""']
    if debug:
        lines.append(f'    print("debug {name}", value)')
    lines += [f"    result = {op}", "    return result", "", ""]
    return lines


def build_learnable_repo(path: Path, features: int = 90, seed: int = 0) -> GitRepo:
    """``features`` commits that add one function each; every debug one is followed, two
    commits later, by its fix."""
    rng = random.Random(seed)
    repo = GitRepo(path)
    modules: dict[str, list[str]] = {
        f"app/module_{k}.py": ['"""Module."""', "", ""] for k in range(4)
    }
    for name, lines in modules.items():
        repo.write(name, "\n".join(lines) + "\n")
    repo.commit("Add the app modules")
    pending: list[tuple[int, str, str]] = []  # (due feature index, module, debug line)
    used: set[str] = set()
    for index in range(features):
        module = rng.choice(sorted(modules))
        name = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"
        while name in used:
            name = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}_{len(used)}"
        used.add(name)
        debug = index % DEBUG_EVERY == 0
        modules[module] += function_source(name, rng.choice(OPS), debug)
        repo.write(module, "\n".join(modules[module]) + "\n")
        repo.commit(f"Add {name.replace('_', ' ')} helper")
        if debug:
            pending.append((index + 2, module, f'    print("debug {name}", value)'))
        for due, target, line in [p for p in pending if p[0] == index]:
            pending.remove((due, target, line))
            modules[target].remove(line)
            repo.write(target, "\n".join(modules[target]) + "\n")
            repo.commit("Fix: remove debug print")
    return repo


@dataclass(frozen=True)
class TrainedBundle:
    """A bundle trained on a learnable repository, the dataset mined from it, and the
    repository."""

    bundle: Path
    data: Path
    repo: GitRepo


def train_on_learnable_repo(root: Path) -> TrainedBundle:
    """Build the learnable repository in ``root``, mine it and train a tiny bundle on it
    (CPU, about a minute): root/learnable, root/data, root/bundle."""
    from training.finetune import train_bundle
    from training.mining.miner import MineOptions, mine_repository
    from training.options import TrainOptions

    repo = build_learnable_repo(root / "learnable")
    data = root / "data"
    mine_repository(repo.path, data, MineOptions())
    bundle = root / "bundle"
    train_bundle(data, "tiny", bundle, TrainOptions(device="cpu", epochs=3, stage0_epochs=6))
    return TrainedBundle(bundle=bundle, data=data, repo=repo)
