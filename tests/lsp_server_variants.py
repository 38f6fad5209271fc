"""Variants of the STAND-IN server (bench/lsp_harness/stand_in_engine.py) for
tests/test_server_hostile.py, each started as ``python -c`` with the command below:
behind a tokenizer as strict as a real one, and with a short wait for the editor's answer
to ``workspace/applyEdit``."""

from __future__ import annotations

import os
import sys
from typing import Any

from bench.lsp_harness import SERVER
from bench.lsp_harness.stand_in_engine import load_stand_in, main


class StrictTokenizer:
    """Wraps a STAND-IN engine so that, like a real tokenizer, it refuses a lone surrogate
    (no UTF-8 for it) or a NUL in anything it is given: hunks, code, comments and
    instructions."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    @staticmethod
    def _tokenize(texts: Any) -> None:
        for text in texts:
            if "\x00" in text:
                raise ValueError("stand-in tokenizer: a NUL in the input")
            text.encode("utf-8")  # UnicodeEncodeError for a lone surrogate

    def score(self, hunks):
        self._tokenize(hunk.text for hunk in hunks)
        return self._engine.score(hunks)

    def comment(self, hunks, should_stop=None):
        self._tokenize(hunk.text for hunk in hunks)
        return self._engine.comment(hunks, should_stop)

    def refine(self, codes, comments, should_stop=None):
        self._tokenize([*codes, *comments])
        return self._engine.refine(codes, comments, should_stop)

    def edit(self, codes, instructions, should_stop=None):
        self._tokenize([*codes, *instructions])
        return self._engine.edit(codes, instructions, should_stop)


def serve_with_strict_tokenizer() -> None:
    """The real server over stdio with a STAND-IN engine behind ``StrictTokenizer``."""
    from server.server import create_server

    os.environ["GIT_OPTIONAL_LOCKS"] = "0"
    server = create_server(loader=lambda *args: StrictTokenizer(load_stand_in(*args)))
    try:
        server.start_io()
    finally:
        if not server.shut_down_cleanly:
            server.close()


STRICT_TOKENIZER_SERVER = (
    SERVER[0],
    "-c",
    "from tests.lsp_server_variants import serve_with_strict_tokenizer as serve; serve()",
)


def serve_with_a_short_apply_edit_timeout() -> None:
    """The STAND-IN server with ``APPLY_EDIT_TIMEOUT_S`` lowered to half a second."""
    import server.client

    server.client.APPLY_EDIT_TIMEOUT_S = 0.5
    sys.exit(main())


SHORT_APPLY_EDIT_TIMEOUT_SERVER = (
    SERVER[0],
    "-c",
    "from tests.lsp_server_variants import serve_with_a_short_apply_edit_timeout as serve; serve()",
)
