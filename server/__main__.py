"""``python -m server`` / ``hunkwise-lsp``: start the hunkwise language server over stdio
(the default) or TCP. Start-up imports no model library; the bundle loads in the
background once the client is initialized."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from training import __version__
from training.gitio.command import NO_OPTIONAL_LOCKS


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1024:
        raise argparse.ArgumentTypeError(
            f"expected a number of bytes of at least 1024, got {value!r}"
        )
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hunkwise-lsp",
        description="The hunkwise language server: review diagnostics, comments and "
        "instruction edits from adapters trained on this repository's history.",
    )
    parser.add_argument("--version", action="version", version=f"hunkwise-lsp {__version__}")
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    parser.add_argument(
        "--tcp", type=_address, metavar="HOST:PORT", help="listen on a TCP port instead"
    )
    parser.add_argument("--log-file", metavar="PATH", help="write the server log to PATH")
    parser.add_argument(
        "--max-message-bytes",
        type=_positive,
        default=None,
        metavar="N",
        help="refuse a message whose Content-Length is over N bytes and close the "
        "connection (default: 16 MiB)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv: every message)"
    )
    return parser.parse_args(argv)


def _configure_logging(log_file: str | None, verbose: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO if log_file else logging.WARNING
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    # pygls logs every message it sends at INFO: only with -vv.
    logging.getLogger("pygls").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _configure_logging(args.log_file, args.verbose)
    # Every git child the server starts (gitpython's included) must not take optional
    # locks: reading a repository never refreshes its index.
    os.environ.update(NO_OPTIONAL_LOCKS)
    from server.server import create_server

    server = create_server()
    if args.max_message_bytes is not None:
        server.max_message_bytes = args.max_message_bytes
    try:
        if args.tcp:
            server.start_tcp(*args.tcp)
        else:
            server.start_io()
    finally:
        if not server.shut_down_cleanly:  # the client went away without a shutdown
            server.close()
    return 0 if server.shut_down_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
