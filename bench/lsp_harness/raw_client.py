"""A bare JSON-RPC client for the language server tests and the fuzz that send what no real
client would: it writes any bytes a test gives it to the server's stdin and collects every
message the server writes, with LSP's Content-Length framing and nothing else."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bench.lsp_harness import ROOT

#: What a client answers to a request from the server (the whole response message), or
#: None to leave it unanswered.
Replies = Callable[[dict[str, Any]], dict[str, Any] | None]


class RawClient:
    """A bare JSON-RPC client over the server's stdin/stdout, with Content-Length framing:
    it sends whatever bytes a test gives it and collects every message the server sends.
    With ``replies`` it answers the server's own requests (``workspace/applyEdit`` ...)
    as they arrive, from a thread of its own: a reader that waited on a full stdin pipe
    would stop draining stdout, and the server would stop too."""

    def __init__(
        self,
        command: tuple[str, ...],
        env: dict[str, str],
        stderr: int | IO[bytes] = subprocess.DEVNULL,
        replies: Replies | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.replies = replies
        self._writing = threading.Lock()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        if replies is not None:
            threading.Thread(target=self._reply, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while (header := stream.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not header or length is None:
                return
            message = json.loads(stream.read(length))
            if self.replies is not None and "method" in message and "id" in message:
                reply = self.replies(message)
                if reply is not None:
                    self._replies.put(reply)
            self.received.put(message)

    def _reply(self) -> None:
        while True:
            reply = self._replies.get()
            try:
                self.send(reply)
            except (OSError, ValueError):  # the server is gone (or its stdin closed)
                return

    def send(self, message: dict[str, Any] | bytes, header: bytes = b"Content-Length") -> None:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.send_raw(header + b": %d\r\n\r\n" % len(body) + body)

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are, framed or not."""
        assert self.process.stdin is not None
        with self._writing:
            self.process.stdin.write(data)
            self.process.stdin.flush()

    def end_input(self) -> None:
        """Close the server's stdin, as a client that goes away does."""
        assert self.process.stdin is not None
        with self._writing:
            self.process.stdin.close()

    def request(self, msg_id: Any, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every message that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.seen.append(self.received.get(timeout=left))
            except queue.Empty:
                break
        return list(self.seen)

    def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.seen if m.get("id") == msg_id and "method" not in m]
            if found:
                return found[0]
            left = deadline - time.monotonic()
            assert left > 0, f"no response to request {msg_id!r}"
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.received.get(timeout=left))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ask ``hunkwise.status`` until the bundle is loaded ("ready")."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            name = f"ready-{attempt}"
            self.request(name, "workspace/executeCommand", {"command": "hunkwise.status"})
            if self.response(name)["result"]["state"] == "ready":
                return
            time.sleep(0.02)
        raise AssertionError("the bundle never loaded")

    def initialize(self, root: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
        self.request(
            "init",
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": options or {},
            },
        )
        answer = self.response("init")
        self.notify("initialized", {})
        return answer

    def close(self) -> None:
        self.request("bye", "shutdown")
        self.response("bye")
        self.notify("exit")
        try:
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
