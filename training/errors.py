"""Errors a user can meet: each carries a message saying what happened and what to do."""


class HunkwiseError(Exception):
    """An expected problem (bad repository, unreadable file, missing bundle ...).

    The command line prints its message on one line and exits with status 2; the
    language server shows it to the user. Never a traceback.
    """
