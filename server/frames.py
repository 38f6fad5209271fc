"""The server's reading side of LSP's base protocol: ``Content-Length`` frames read with
limits, header names in any case. pygls' own loop reads whatever length a client names
(a huge one is a MemoryError) and goes deaf after broken framing; this one stops with a
logged reason instead, since after a bad frame no byte of the stream can be trusted to
start a message."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Protocol

log = logging.getLogger(__name__)

#: The largest message body the server reads; a longer one ends the connection.
MAX_CONTENT_LENGTH = 16 * 1024 * 1024
#: The longest header line (``Content-Length: N\r\n`` is about 30 bytes).
MAX_HEADER_LINE = 1024
#: The most header lines in one frame (LSP knows two: Content-Length and Content-Type).
MAX_HEADERS = 16


class FramingError(Exception):
    """The client's bytes are not an LSP frame the server will read; the message says
    what was wrong."""


class UnreadableBody(ValueError):
    """A frame's body that is no JSON the server can read: not UTF-8, not JSON, nested
    too deep for the reader, or a number too long to convert."""


class FrameSource(Protocol):
    """Where frames come from: an asyncio stream, or stdin read on a thread."""

    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...


class StdinFrames:
    """stdin read on the server's thread pool, each line at most ``MAX_HEADER_LINE``
    bytes."""

    def __init__(self, stdin: BinaryIO, executor: Any) -> None:
        self.stdin = stdin
        self.executor = executor

    def readline(self) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(
            self.executor, self.stdin.readline, MAX_HEADER_LINE + 1
        )

    async def readexactly(self, n: int) -> bytes:
        body = await asyncio.get_running_loop().run_in_executor(self.executor, self.stdin.read, n)
        if len(body) < n:
            raise asyncio.IncompleteReadError(body, n)
        return body


def content_length(headers: list[bytes], limit: int = MAX_CONTENT_LENGTH) -> int:
    """The body length a frame's header lines name (names in any case, as HTTP's)."""
    length: int | None = None
    for line in headers:
        name, colon, value = line.partition(b":")
        if not colon:
            raise FramingError(f"a header line without a colon: {line[:80]!r}")
        if name.strip().lower() != b"content-length":
            continue  # Content-Type, or a header LSP does not know
        text = value.strip()
        if not text.isdigit() or len(text) > 20:
            raise FramingError(f"Content-Length is not a number: {text[:40]!r}")
        length = int(text)
    if length is None:
        raise FramingError("a frame without a Content-Length header")
    if length > limit:
        raise FramingError(f"Content-Length {length} is over the server's limit of {limit} bytes")
    return length


async def read_frame(source: FrameSource, limit: int = MAX_CONTENT_LENGTH) -> bytes | None:
    """The next message body, or None at the end of the stream before a frame starts."""
    headers: list[bytes] = []
    while True:
        try:
            line = await source.readline()
        except (ValueError, asyncio.LimitOverrunError) as error:  # an asyncio stream's limit
            raise FramingError(f"a header line too long ({error})") from error
        if not line:
            if headers:
                raise FramingError("the stream ended inside a frame's headers")
            return None
        if not line.endswith(b"\n"):
            raise FramingError(f"a header line longer than {MAX_HEADER_LINE} bytes")
        line = line.rstrip(b"\r\n")
        if not line:
            if not headers:
                continue  # a stray line break between frames
            break
        headers.append(line)
        if len(headers) > MAX_HEADERS:
            raise FramingError(f"more than {MAX_HEADERS} header lines in a frame")
    length = content_length(headers, limit)
    try:
        return await source.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise FramingError(
            f"the stream ended after {len(error.partial)} of {length} body bytes"
        ) from error


async def serve_frames(
    stop_event: threading.Event,
    source: FrameSource,
    protocol: Any,
    error_handler: Callable[[Exception, Any], Any],
    limit: int = MAX_CONTENT_LENGTH,
) -> str | None:
    """Hand every message to ``protocol`` until the stream ends or ``stop_event`` is set;
    the reason the connection was given up, if framing broke."""
    from pygls.exceptions import JsonRpcException

    while not stop_event.is_set():
        try:
            body = await read_frame(source, limit)
        except FramingError as error:
            reason = f"unreadable input from the client: {error}; closing the connection"
            log.error("%s", reason)
            return reason
        if body is None:
            return None
        try:
            try:
                data = json.loads(body)
            except RecursionError:
                raise UnreadableBody("the message is nested too deep to read") from None
            except ValueError as error:  # JSON's, UTF-8's, or int()'s digit limit
                raise UnreadableBody(f"the message is not JSON: {error}") from None
            protocol.handle_message(protocol.structure_message(data))
        except Exception as error:
            log.debug("unable to handle a message", exc_info=True)
            error_handler(error, JsonRpcException)
    return None
