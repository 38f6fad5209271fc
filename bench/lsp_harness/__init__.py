"""What drives the language server without a model: the STAND-IN engine and trainer
(stand_in_engine), a bare JSON-RPC client (raw_client), and random bad traffic with the
answers JSON-RPC requires of each message (fuzz_messages). bench/lsp_fuzz.py runs the
fuzz, and the protocol-only tests (tests/test_server_fuzz.py, ..._hostile.py,
..._stand_in.py) use all three; it lives under bench/ because the tests may use bench's
code but bench never imports tests/. Not part of the installed package."""

from __future__ import annotations

import sys
from pathlib import Path

#: the repository root, where the server runs
ROOT = Path(__file__).resolve().parents[2]
#: the real server, as editors start it
SERVER = (sys.executable, "-m", "server")
#: the real server with the STAND-IN engine and trainer of stand_in_engine.py
STAND_IN_SERVER = (sys.executable, str(Path(__file__).with_name("stand_in_engine.py")))
