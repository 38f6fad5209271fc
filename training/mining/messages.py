"""Commit messages: the one rule for what a fix commit is, message cleaning (trailers,
issue numbers, URLs, merge boilerplate), and the quality filter for edit instructions."""

from __future__ import annotations

import re

# A fix commit says it fixes something. Word boundaries keep "prefix", "fixture" and
# "debug" out. Bare PR numbers such as "Add x (#12)" are not fixes: squash merges end
# every subject that way.
_FIX = re.compile(
    r"\b(?:fix(?:e[sd]|ing)?|bug(?:s|fix(?:es)?)?|hotfix(?:es)?|typos?|revert(?:s|ed|ing)?"
    r"|regressions?|crash(?:es|ed|ing)?)\b"
    r"|\baddress(?:es|ed|ing)?\s+(?:the\s+)?(?:code\s+)?review"
    r"|\breview\s+(?:comments?|feedback|remarks?)\b"
    r"|\b(?:clos|resolv)(?:e|es|ed|ing)\s+(?:[\w.-]+/[\w.-]+)?#\d+"
    r"|\b(?:issue|bug)\s*#\d+",
    re.IGNORECASE,
)

_TRAILER = re.compile(
    r"^(?:signed-off-by|co-authored-by|change-id|reviewed-by|acked-by|tested-by|reported-by"
    r"|suggested-by|helped-by|cc|fixes|closes|refs|see-also|pr-url|reviewed-on|bug|issue)\s*:",
    re.IGNORECASE,
)
_URL = re.compile(r"<?\bhttps?://\S+>?", re.IGNORECASE)
_ISSUE_REF = re.compile(
    r"\(\s*(?:[\w.-]+/[\w.-]+)?#\d+\s*\)|(?:[\w.-]+/[\w.-]+)?#\d+|\bgh-\d+\b", re.IGNORECASE
)
_MERGE_LINE = re.compile(
    r"^(?:merge (?:pull request|branch|remote-tracking branch|tag|commit)\b.*"
    r"|merged? in .*|conflicts:.*)$",
    re.IGNORECASE,
)
_CONVENTIONAL = re.compile(r"^[a-z]+(?:\([^)]*\))?!?:\s+", re.IGNORECASE)
_SKIP_TAG = re.compile(r"\[(?:skip ci|ci skip|no ci|skip actions)\]", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")
_DANGLING = re.compile(r"\s+([,.;:])|\(\s*\)|\[\s*\]")


def is_fix(message: str) -> bool:
    """Whether a commit message says the commit fixes something."""
    return bool(_FIX.search(message))


def clean_message(message: str) -> str:
    """A commit message with trailers, issue/PR numbers, URLs and merge boilerplate removed.

    Lines are kept (the first is the subject); whitespace is collapsed; empty result
    when nothing but boilerplate was there.
    """
    lines = []
    for raw in message.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if _TRAILER.match(line) or _MERGE_LINE.match(line) or line.startswith("#"):
            continue
        line = _URL.sub("", line)
        line = _ISSUE_REF.sub("", line)
        line = _SKIP_TAG.sub("", line)
        line = _DANGLING.sub(lambda m: m.group(1) or "", line)
        line = _SPACES.sub(" ", line).strip()
        lines.append(line)
    # Drop empty lines at both ends and collapse runs of empty lines.
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def clean_subject(message: str) -> str:
    """The cleaned first line, without a conventional-commit prefix ("fix(x): ")."""
    cleaned = clean_message(message)
    subject = cleaned.split("\n", 1)[0].strip() if cleaned else ""
    subject = _CONVENTIONAL.sub("", subject).strip()
    if subject.endswith(".") and not subject.endswith(".."):
        subject = subject[:-1].rstrip()
    return subject[:1].upper() + subject[1:]


# Imperative verbs that open a useful edit instruction (CommitPackFT keeps messages that
# start with one).
_IMPERATIVE = frozenset(
    [
        "add",
        "adjust",
        "allow",
        "append",
        "apply",
        "avoid",
        "bump",
        "call",
        "cache",
        "catch",
        "change",
        "check",
        "clarify",
        "clean",
        "clear",
        "close",
        "collect",
        "combine",
        "compute",
        "configure",
        "convert",
        "copy",
        "correct",
        "create",
        "declare",
        "decouple",
        "default",
        "define",
        "delete",
        "deprecate",
        "detect",
        "disable",
        "document",
        "drop",
        "enable",
        "enforce",
        "ensure",
        "escape",
        "expand",
        "expose",
        "extend",
        "extract",
        "factor",
        "fix",
        "flatten",
        "format",
        "generalize",
        "generalise",
        "guard",
        "handle",
        "hide",
        "ignore",
        "implement",
        "import",
        "improve",
        "include",
        "increase",
        "decrease",
        "inline",
        "insert",
        "introduce",
        "invert",
        "isolate",
        "keep",
        "let",
        "limit",
        "load",
        "log",
        "make",
        "mark",
        "merge",
        "migrate",
        "move",
        "normalize",
        "normalise",
        "optimize",
        "optimise",
        "parse",
        "pass",
        "prefer",
        "prevent",
        "print",
        "raise",
        "read",
        "reduce",
        "refactor",
        "reformat",
        "register",
        "reject",
        "rename",
        "reorder",
        "reorganize",
        "replace",
        "report",
        "require",
        "reset",
        "resolve",
        "restore",
        "restrict",
        "restructure",
        "return",
        "reuse",
        "revert",
        "rewrite",
        "run",
        "sanitize",
        "save",
        "set",
        "show",
        "simplify",
        "skip",
        "sort",
        "split",
        "store",
        "strip",
        "support",
        "swap",
        "switch",
        "throw",
        "tidy",
        "tweak",
        "unify",
        "update",
        "upgrade",
        "use",
        "validate",
        "wrap",
        "write",
    ]
)
_LOW_INFORMATION = frozenset(
    ["update", "updates", "misc", "minor", "changes", "change", "stuff", "cleanup", "tweak"]
)
_WIP = re.compile(r"\b(?:wip|work in progress|tmp|temp|todo|xxx|fixup!|squash!|amend!)", re.I)


def is_good_instruction(
    subject: str, min_words: int = 2, max_words: int = 30, max_chars: int = 200
) -> bool:
    """Whether a cleaned subject is a usable edit instruction: imperative, specific, bounded."""
    words = subject.split()
    if not (min_words <= len(words) <= max_words) or len(subject) > max_chars:
        return False
    if _WIP.search(subject):
        return False
    first = words[0].lower().strip(":,")
    if first not in _IMPERATIVE:
        return False
    # "Update README.md", "Minor changes": a verb, but nothing a model can act on.
    return not (first in _LOW_INFORMATION and len(words) <= 2)
