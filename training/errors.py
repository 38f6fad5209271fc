"""Errors a user can meet: each carries a message saying what happened and what to do."""


class HunkwiseError(Exception):
    """An expected problem (bad repository, unreadable file, missing bundle ...).

    The command line prints its message on one line and exits with ``exit_code`` (2: bad
    usage or input); the language server shows it to the user. Never a traceback.
    """

    exit_code = 2


class RuntimeFailure(HunkwiseError):
    """An expected problem the user's input did not cause (out of memory, a git or model
    failure, a full disk): one line, and exit status 3."""

    exit_code = 3


class GenerationStopped(Exception):
    """A generation stopped between tokens because its caller no longer wants it (its
    document changed, its request was cancelled, or more urgent work is waiting). Not a
    user's problem: the server drops the job or runs it again later."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): what
    a one-line error message quotes of a library's failure."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
