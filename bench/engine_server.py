"""A real OpenAI-compatible inference engine serving a bundle, for the remote backend's
tests and bench: llama-cpp-python's server (llama.cpp) on the CPU, on the GGUF files and
config that ``hunkwise serve-command --engine llama-cpp`` writes, started as its own
process on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from training.gguf_export import export_bundle


def llama_cpp_available() -> bool:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def llama_cpp_server(
    bundle: Path, workdir: Path, api_key: str | None = None, timeout: float = 120.0
) -> Iterator[str]:
    """Export ``bundle`` to GGUF in ``workdir``, serve it, and yield the engine's URL once
    it lists its models; the server is stopped on the way out."""
    port = free_port()
    export = export_bundle(bundle, workdir / "gguf", host="127.0.0.1", port=port)
    if api_key:
        config = json.loads(export.config.read_text(encoding="utf-8"))
        config["api_key"] = api_key
        export.config.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log = open(workdir / "engine.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(export.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the engine exited with {process.returncode}: "
                    + (workdir / "engine.log").read_text(errors="replace")[-2000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", headers=headers, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
