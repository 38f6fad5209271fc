"""Commit messages: the one rule for what a fix commit is, message cleaning (trailers,
issue numbers, URLs, merge boilerplate), and the quality filter for edit instructions."""

from __future__ import annotations

import re

# What a fix commit is (docs/mining.md, "Fix commits"): its message says that something
# was wrong, and what was wrong is running code, not docs prose, style or a dependency's
# version. Measured on hand-labelled commits of seven public projects
# (tests/fixtures/fix_commits.jsonl, bench/fix_rule.py); a linear model on the words did
# no better on projects it had not seen.
_FIX_VERB = r"(?:fix(?:e[sd]|ing)?|bug-?fix(?:es)?|hotfix(?:es)?)"
_BROKEN = re.compile(
    rf"\b(?:{_FIX_VERB}|bugs?|buggy|revert(?:s|ed|ing)?"
    r"|regress(?:ion|ions|ed)?|crash(?:es|ed|ing)?|segfaults?|tracebacks?|hang(?:s|ing)?"
    r"|deadlocks?|leak(?:s|ed|ing)?|race\s+conditions?|infinite\s+loop|endless\s+loop"
    r"|fail(?:s|ed|ing|ures?)?|broken|breaks?|breakage|wrong(?:ly)?|incorrect(?:ly)?"
    r"|erroneous(?:ly)?|mistakes?|faulty|bogus|mis(?:handl|behav|indent|pars|match)\w*"
    r"|work(?:s|ed)?\s+around|workarounds?|cve-\d+|vulnerab\w*|security)\b"
    r"|\b[A-Z]\w*(?:Error|Exception)\b"
    r"|\baddress(?:es|ed|ing)?\s+(?:the\s+|this\s+|an?\s+)?(?:code\s+)?(?:issue|problem|bug|review)"
    r"|\breview\s+(?:comments?|feedback|remarks?)\b"
    r"|\b(?:issue|bug)\s*#\d+",
    re.IGNORECASE,
)
# A subject that opens like a repair: "Prevent a KeyError", "Make sure ...", "Don't ...".
_REPAIR_OPENING = re.compile(
    r"^(?:[\w\s-]+:\s*)?(?:correct(?:s|ed)?|repair(?:s|ed)?|prevent(?:s|ed)?"
    r"|make\s+sure|ensure[sd]?|handle[sd]?|restore[sd]?|re-?add(?:s|ed)?|preserve[sd]?"
    r"|don'?t|do\s+not|never|no\s+longer|properly|explicitly\s+close"
    r"|release[sd]?\s+\w+\s+(?:if|when|on)\b)",
    re.IGNORECASE,
)
_REPAIR_WORDS = re.compile(
    r"\b(?:properly|correctly|consistent(?:ly)?|sane|robust|again|missing"
    r"|backwards?[\s-]compat\w*|compat(?:ibility)?)\b",
    re.IGNORECASE,
)
# The body counts where it describes a failure; "Fixes #12" there closes features too.
_BODY_BROKE = re.compile(
    r"\b(?:traceback|crash\w*|regression|segfault|breaks\s+with"
    r"|raises?\s+an?\s+\w*(?:Error|Exception)|would\s+fail|fails\s+(?:with|when|on|if)"
    r"|was\s+broken|is\s+broken)\b|\w(?:Error|Exception):",
    re.IGNORECASE,
)
# Repairs of things that are not running code: typos, style, docs, versions.
_NOT_CODE_TOPIC = re.compile(
    r"\b(?:typos?|grammar|grammatical|spelling|wording|whitespace|pep\s?8|flake8|lint(?:er|ing)?"
    r"|pre-commit|isort|bump(?:s|ed)?|dependabot|version\s+v?\d[\w.]*)\b"
    r"|^\W*(?:docs?|documentation|readme|changelog)\b",
    re.IGNORECASE,
)
_NOT_CODE_OBJECT = (
    r"(?:docs?|documentation|readme|changelog|change-?log|links?|docstrings?|comments?"
    r"|formatting|rst|markdown|typing|type\s+hints?|annotations?|mypy|requirements?"
    r"|headings?|indentation)"
)
_ADJECTIVES = (
    r"(?:(?:a|an|the|some|small|minor|few|more|various|broken|bad|doc|docs|config|\w+'s)\s+)*"
)
_NOT_CODE_REPAIR = re.compile(
    rf"\b{_FIX_VERB}\s+{_ADJECTIVES}{_NOT_CODE_OBJECT}\b"
    rf"|\b{_NOT_CODE_OBJECT}\s+(?:\w+\s+)?{_FIX_VERB}\b"
    r"|^(?:add|write|new)\s+(?:a\s+|some\s+)?(?:unit\s+)?tests?\b",
    re.IGNORECASE,
)
# Words that leave no doubt that code misbehaved, even in a docs-sounding subject.
_CODE_BROKE = re.compile(
    r"\b[A-Z]\w*(?:Error|Exception)\b|\b(?:crash\w*|regression|revert\w*|traceback|segfault"
    r"|leak\w*|hang\w*|deadlock|cve-\d+|fail(?:s|ed|ing|ures?)?|breaks|build|example)\b",
    re.IGNORECASE,
)

_TRAILER = re.compile(
    r"^(?:signed-off-by|co-authored-by|change-id|reviewed-by|acked-by|tested-by|reported-by"
    r"|suggested-by|helped-by|cc|fixes|closes|refs|see-also|pr-url|reviewed-on|bug|issue)\s*:",
    re.IGNORECASE,
)
# A link that only points elsewhere ("See https://...", "(https://...)") goes with its
# lead-in; one inside a sentence stands in as its host, so the sentence keeps its shape.
_URL_REFERENCE = re.compile(
    r"(?:\b(?:see|refs?|ref\.|cf\.?|more|details|docs?|from|at|in|via|source|link)\s*:?\s*)?"
    r"[(<\[]?\bhttps?://\S+?[)>\]]?(?=[\s,;.]*$)",
    re.IGNORECASE,
)
_URL = re.compile(r"<?\bhttps?://([^/\s>]+)\S*?>?(?=[\s,;)]|[.:](?:\s|$)|$)", re.IGNORECASE)
# "#12", "(#12)", "owner/repo#12", "gh-12", "#GH-12"; not "fix-#12" in a branch name, not
# "Session#send". "issue 12" / "bug #12" keep their word unless they open the line.
_ISSUE_REF = re.compile(
    r"\(\s*(?:(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|refs?|see)\s+)?(?:[\w.-]+/[\w.-]*\w)?#\d+\s*\)"
    r"|[,;]?\s*\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|refs?|see)\s+(?:[\w.-]+/[\w.-]*\w)?#\d+\s*$"
    r"|(?<![\w./#-])(?:[\w.-]+/[\w.-]*\w)?#(?:gh-)?\d+\b"
    r"|(?<![\w-])gh-\d+\b",
    re.IGNORECASE,
)
_LEADING_ISSUE = re.compile(
    r"^(?:(?:issue|bug|ticket|pr|pull request)\s*#?\d+\b|#[\w-]+\b)\s*[:,.-]?\s*", re.IGNORECASE
)
_ISSUE_NUMBER = re.compile(r"\b(issues?|bugs?|tickets?)\s*#?\d+\b", re.IGNORECASE)
_MERGE_LINE = re.compile(
    r"^(?:merge (?:pull request|branch|remote-tracking branch|tag|commit)\b.*"
    r"|merged? in .*|conflicts:.*)$",
    re.IGNORECASE,
)
# git's own comment lines ("# Conflicts:", "#\tpath"); "#4965 fix: ..." is a subject.
_GIT_COMMENT = re.compile(r"^#(?:\s|$)")
# Conventional-commit types (conventionalcommits.org and the Angular convention), so
# an opening such as "Example: ..." that is part of the sentence is not cut.
_CONVENTIONAL = re.compile(
    r"^(?:feat|feature|fix|bugfix|hotfix|docs?|style|refactor|perf|test|tests|build|ci|chore"
    r"|revert|deps|security|release|types?)(?:\([^)]*\))?!?:\s+",
    re.IGNORECASE,
)
_SKIP_TAG = re.compile(r"\[(?:skip ci|ci skip|no ci|skip actions)\]", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")
_DANGLING = re.compile(r"\s+([,.;:])|\(\s*\)|\[\s*\]")
_LEADING_PUNCTUATION = re.compile(r"^[\s,.;:\-–—]+")
_TRAILING_PUNCTUATION = re.compile(r"[\s,;:(\[\-–—]+$")


def is_fix(message: str) -> bool:
    """Whether a commit message says the commit repaired running code: the subject says
    something was wrong (or opens like a repair), or the body describes a failure; and
    the subject is not about docs prose, typos, style or versions, unless it also names
    a failure of code."""
    subject, _, body = message.strip().partition("\n")
    subject = subject.strip()
    said = (
        _BROKEN.search(subject)
        or _REPAIR_OPENING.search(subject)
        or _REPAIR_WORDS.search(subject)
        or _BODY_BROKE.search(body)
    )
    if not said:
        return False
    not_code = _NOT_CODE_TOPIC.search(subject) or _NOT_CODE_REPAIR.search(subject)
    return not (not_code and not _CODE_BROKE.search(subject))


def _clean_line(line: str) -> str:
    line = _URL_REFERENCE.sub("", line)
    line = _URL.sub(lambda m: m.group(1), line)
    line = _LEADING_ISSUE.sub("", line)
    line = _ISSUE_REF.sub("", line)
    line = _ISSUE_NUMBER.sub(lambda m: m.group(1), line)
    line = _SKIP_TAG.sub("", line)
    line = _DANGLING.sub(lambda m: m.group(1) or "", line)
    line = _SPACES.sub(" ", line).strip()
    return _TRAILING_PUNCTUATION.sub("", _LEADING_PUNCTUATION.sub("", line))


def clean_message(message: str) -> str:
    """A commit message with trailers, issue/PR numbers, URLs and merge boilerplate removed.

    Lines are kept (the first is the subject); whitespace is collapsed; empty result
    when nothing but boilerplate was there.
    """
    lines = []
    for raw in message.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if _TRAILER.match(line) or _MERGE_LINE.match(line) or _GIT_COMMENT.match(line):
            continue
        lines.append(_clean_line(line))
    # Drop empty lines at both ends and collapse runs of empty lines.
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def clean_subject(message: str) -> str:
    """The cleaned first line, without a conventional-commit prefix ("fix(x): ") and
    without sentences that say nothing once cleaned ("Fix issue 1027. Always persist
    cookies" -> "Always persist cookies")."""
    cleaned = clean_message(message)
    subject = cleaned.split("\n", 1)[0].strip() if cleaned else ""
    subject = _CONVENTIONAL.sub("", subject).strip()
    sentences = _SENTENCE_END.split(subject)
    if len(sentences) > 1:
        kept = [s for s in sentences if is_informative(s.rstrip("."))]
        subject = " ".join(kept) if kept else subject
    if subject.endswith(".") and not subject.endswith(".."):
        subject = subject[:-1].rstrip()
    return subject[:1].upper() + subject[1:]


# Words that carry no content of their own in a commit subject: a subject made only of
# these ("Fix", "Docs fix", "Fix typo", "Minor changes") teaches a model nothing.
_GENERIC_WORDS = frozenset(
    """a an the this that these some more minor small little few another other and or
    of to for in on at by with from into it its is are be was
    fix fixes fixed fixing fixup bug bugs bugfix bugfixes issue issues problem problems
    typo typos spelling doc docs documentation readme changelog comment comments
    update updates updated updating change changes changed tweak tweaks cleanup clean
    misc stuff things wip test tests style lint pep8 formatting format whitespace
    refactor refactoring review feedback pr patch again oops error errors build ci
    version release bump merge conflict conflicts revert reverted""".split()  # noqa: SIM905
)
# Merges, and reverts of merges: the subject names a branch, not a change.
_MERGE_SUBJECT = re.compile(r"^(?:revert\s+)?[\"']?merge\b", re.IGNORECASE)


def is_informative(subject: str) -> bool:
    """Whether a cleaned subject says something specific enough to learn a review
    comment or an edit instruction from: at least two words, one of them not generic,
    and not a merge (or the revert of one)."""
    if _MERGE_SUBJECT.match(subject):
        return False
    words = re.findall(r"[\w.#/()'`-]+", subject.lower())
    if len(words) < 2:
        return False
    return any(word.strip(".,:;()'`") not in _GENERIC_WORDS for word in words)


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
    if _WIP.search(subject) or not is_informative(subject):
        return False
    first = words[0].lower().strip(":,")
    if first not in _IMPERATIVE:
        return False
    # "Update README.md", "Minor changes": a verb, but nothing a model can act on.
    return not (first in _LOW_INFORMATION and len(words) <= 2)
