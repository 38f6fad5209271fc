"""The VS Code extension in real VS Code: code-server (VS Code in a browser) with the
packaged extension (editors/vscode/hunkwise.vsix) installed, driven in headless Chromium
by editors/vscode/e2e/drive.mjs (playwright-core) with real keystrokes and clicks, on a
temp git repository and the real server with a tiny bundle. The driver types a change,
waits for the finding in Problems, hovers it, applies "Apply suggested refinement" from
the light bulb menu, runs "Hunkwise: Edit Selection with Instruction…" from the command
palette, watches the status-bar item and cancels "Hunkwise: Train from Repository". The
file on disk after each step must read exactly as the server's edits (read from the
extension's LSP trace) say.

code-server and playwright-core come from editors/vscode/e2e/setup-code-server.sh (a
cache folder outside the repository); Chromium is the system's. Screenshots of each step
are kept in the artifacts folder the test prints ($HUNKWISE_ARTIFACTS/vscode-real when
that is set)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.editor_support import (
    BASE_TEXT,
    CHANGE,
    EDITOR_SETTINGS,
    INSTRUCTION,
    INSTRUCTION_RANGE,
    apply_workspace_edit,
    as_the_cli_says,
    cli_findings,
    missing_editor,
    text_edits,
)
from tests.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "editors" / "vscode"
DRIVER = EXTENSION / "e2e" / "drive.mjs"
SETUP = EXTENSION / "e2e" / "setup-code-server.sh"
VSIX = EXTENSION / "hunkwise.vsix"
CODE_SERVER_HOME = Path(
    os.environ.get("HUNKWISE_CODE_SERVER_HOME")
    or Path.home() / ".cache" / "hunkwise" / "code-server"
)
CHROMIUM = Path(os.environ.get("HUNKWISE_CHROMIUM", "/usr/bin/chromium"))
#: Seconds: code-server to listen, the driver (all its steps), the test at most.
LISTEN_TIMEOUT = 60
DRIVER_TIMEOUT = 240

#: VS Code's user settings: nothing that types for the user (auto-closing, auto-indent,
#: suggestions), saves on its own, asks about trust or shows a welcome page.
USER_SETTINGS = {
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "extensions.ignoreRecommendations": True,
    "git.enabled": False,
    "files.autoSave": "off",
    "files.insertFinalNewline": False,
    "files.trimTrailingWhitespace": False,
    "editor.formatOnSave": False,
    "editor.formatOnType": False,
    "editor.autoIndent": "none",
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "editor.autoSurround": "never",
    "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.parameterHints.enabled": False,
    "editor.acceptSuggestionOnEnter": "off",
    "editor.hover.delay": 150,
}


def find_code_server() -> tuple[Path | None, str]:
    """code-server as setup-code-server.sh installs it, with what the driver needs."""
    binary = CODE_SERVER_HOME / "node_modules" / ".bin" / "code-server"
    setup = f"run {SETUP.relative_to(ROOT)}"
    if not binary.exists():
        return None, f"code-server is not installed in {CODE_SERVER_HOME} ({setup})"
    if not (CODE_SERVER_HOME / "node_modules" / "playwright-core").is_dir():
        return None, f"playwright-core is not installed in {CODE_SERVER_HOME} ({setup})"
    if shutil.which("node") is None:
        return None, "node is not installed"
    if not CHROMIUM.is_file():
        return None, f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return binary, ""


def extension_package() -> Path:
    """hunkwise.vsix, packaged again when a source file is newer (.ci/run packages it)."""
    sources = [EXTENSION / "package.json", *sorted((EXTENSION / "src").glob("*.ts"))]
    newest = max(path.stat().st_mtime for path in sources)
    if VSIX.is_file() and VSIX.stat().st_mtime >= newest:
        return VSIX
    if shutil.which("npm") is None or not (EXTENSION / "node_modules").is_dir():
        missing_editor(
            f"{VSIX} is missing or older than the sources, and editors/vscode has no "
            "node_modules to package it (npm ci && npm run package there)"
        )
    finished = subprocess.run(
        ["npm", "run", "package"], cwd=EXTENSION, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-3000:]
    return VSIX


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(item.relative_to(path)): hashlib.sha256(item.read_bytes()).hexdigest()
        for item in sorted(path.rglob("*"))
        if item.is_file()
    }


def processes_marked(marker: str) -> list[int]:
    """The processes whose command line or environment mentions ``marker`` (Linux /proc):
    everything code-server, the driver and Chromium started for this test."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                if marker.encode() in (entry / name).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                break
    return found


def stop(process: subprocess.Popen | None, marker: str) -> None:
    """Stop ``process`` and its process group (SIGTERM, then SIGKILL), then any process
    of this test left over in another group (Chromium and the trainer make their own)."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    own_group = os.getpgid(0)
    for attempt in range(20):
        left = processes_marked(marker)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                if group != own_group:
                    os.killpg(group, signal.SIGKILL if attempt else signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGKILL if attempt else signal.SIGTERM)
        time.sleep(0.25)


def lsp_trace(log: str) -> list[dict[str, Any]]:
    """The messages of a vscode-languageclient trace (hunkwise.trace.server verbose):
    direction, kind, method and the JSON of its Params/Result."""
    messages: list[dict[str, Any]] = []
    lines = log.splitlines()
    header = re.compile(
        r"^\[Trace - [^\]]*\] (Sending|Received) (request|response|notification) '([^']*?)(?: - \(([^)]*)\))?'"
    )
    index = 0
    while index < len(lines):
        match = header.match(lines[index])
        index += 1
        if not match:
            continue
        message: dict[str, Any] = {
            "direction": match.group(1),
            "kind": match.group(2),
            "method": match.group(3),
            "id": match.group(4),
            "body": None,
        }
        messages.append(message)
        if index < len(lines) and re.match(r"^(Params|Result): ", lines[index]):
            body = [lines[index].split(": ", 1)[1]]
            index += 1
            while index < len(lines) and lines[index].strip():
                body.append(lines[index])
                index += 1
            with contextlib.suppress(json.JSONDecodeError):
                message["body"] = json.loads("\n".join(body))
    return messages


def edited_text() -> str:
    lines = BASE_TEXT.splitlines(keepends=True)
    new = [line + "\n" for line in CHANGE["lines"]]
    return "".join(lines[: CHANGE["start"]] + new + lines[CHANGE["end"] :])


def artifacts_dir(tmp_path: Path) -> Path:
    if os.environ.get("HUNKWISE_ARTIFACTS"):
        path = Path(os.environ["HUNKWISE_ARTIFACTS"]) / "vscode-real"
        shutil.rmtree(path, ignore_errors=True)
    else:
        path = tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def profile_arguments(tmp_path: Path) -> list[str]:
    """code-server's config, user data and extensions under ``tmp_path``: the same for the
    extension's install and the server that runs it."""
    return [
        "--config",
        str(tmp_path / "code-server.yaml"),
        "--user-data-dir",
        str(tmp_path / "user-data"),
        "--extensions-dir",
        str(tmp_path / "extensions"),
    ]


def start_code_server(
    binary: Path, tmp_path: Path, folder: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    """code-server on a free port of 127.0.0.1 (port 0: it prints the one it got)."""
    log_path = tmp_path / "code-server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            str(binary),
            "--auth",
            "none",
            "--bind-addr",
            "127.0.0.1:0",
            *profile_arguments(tmp_path),
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            str(folder),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(
            r"HTTP server listening on (http://127\.0\.0\.1:\d+)/", log_path.read_text()
        )
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    output = log_path.read_text()
    stop(process, str(tmp_path))
    pytest.fail(f"code-server did not start listening:\n{output[-3000:]}")


@pytest.fixture(scope="session")
def code_server() -> Path:
    """code-server, or the skip (the failure, where editors are required) that says why
    not; a session fixture named before ``tiny_bundle``, so it is checked before a
    bundle is trained for nothing."""
    binary, missing = find_code_server()
    if binary is None:
        missing_editor(missing)
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def vsix(code_server: Path) -> Path:
    return extension_package()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_vscode_real(code_server: Path, vsix: Path, tmp_path: Path, tiny_bundle: Path):
    artifacts = artifacts_dir(tmp_path)
    print(f"\nVS Code e2e artifacts (screenshots, result.json, logs): {artifacts}")

    # The workspace: one committed file, the settings in .vscode (kept out of git), and
    # a copy of the bundle, so that training (cancelled, but still) never touches the
    # shared one.
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add the totals module", totals_dot_py=BASE_TEXT)
    bundles = tmp_path / "bundles"
    bundle = bundles / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    digest = tree_digest(bundle)
    (repo.path / ".git" / "info" / "exclude").write_text(".vscode/\n", encoding="utf-8")
    workspace_settings = {
        "hunkwise.pythonPath": os.environ.get("HUNKWISE_PYTHON") or sys.executable,
        "hunkwise.bundle": str(bundle),
        "hunkwise.threshold": EDITOR_SETTINGS["threshold"],
        "hunkwise.maxNewTokens": EDITOR_SETTINGS["maxNewTokens"],
        "hunkwise.device": "cpu",
        "hunkwise.trace.server": "verbose",
    }
    (repo.path / ".vscode").mkdir()
    (repo.path / ".vscode" / "settings.json").write_text(json.dumps(workspace_settings, indent=2))
    user = tmp_path / "user-data" / "User"
    user.mkdir(parents=True)
    (user / "settings.json").write_text(json.dumps(USER_SETTINGS, indent=2))

    env = {
        **repo.env,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("VSCODE_IPC_HOOK_CLI", None)

    installed = subprocess.run(
        [
            str(code_server),
            *profile_arguments(tmp_path),
            "--install-extension",
            str(vsix),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0 and "successfully installed" in installed.stdout, (
        installed.stdout + installed.stderr
    )

    marker = str(tmp_path)
    server: subprocess.Popen | None = None
    driver: subprocess.Popen | None = None
    output = ""
    started = time.monotonic()
    try:
        server, url = start_code_server(code_server, tmp_path, repo.path, env)
        config = {
            "url": f"{url}/?folder={repo.path}",
            "file": str(repo.path / "totals.py"),
            "artifacts": str(artifacts),
            "profile": str(tmp_path / "chromium-profile"),
            "chromium": str(CHROMIUM),
            "playwright": str(CODE_SERVER_HOME / "node_modules"),
            "change": {"line": CHANGE["start"] + 1, "lines": CHANGE["lines"]},
            "selection": INSTRUCTION_RANGE,
            "instruction": INSTRUCTION,
            "timeoutMs": 90_000,
        }
        config_path = tmp_path / "drive.json"
        config_path.write_text(json.dumps(config, indent=2))
        driver = subprocess.Popen(
            ["node", str(DRIVER), str(config_path)],
            env={**os.environ, "HUNKWISE_E2E_MARKER": marker},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = driver.communicate(timeout=DRIVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(driver, marker)
            output, _ = driver.communicate()
            output += f"\nthe driver did not finish in {DRIVER_TIMEOUT} s"
    finally:
        stop(driver, marker)
        stop(server, marker)
        left = processes_marked(marker)
    seconds = time.monotonic() - started

    # What happened, for the assertions and for whoever reads the artifacts.
    logs = sorted((tmp_path / "user-data" / "logs").glob("**/*-hunkwise.log"))
    trace_text = "\n".join(path.read_text(errors="replace") for path in logs)
    (artifacts / "hunkwise-output.log").write_text(trace_text)
    shutil.copy(tmp_path / "code-server.log", artifacts / "code-server.log")
    (artifacts / "driver.log").write_text(output)
    result_path = artifacts / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    print(output)
    print(f"VS Code e2e: {seconds:.0f} s; artifacts in {artifacts}")

    hunkwise_log = "\n".join(
        line for line in trace_text.splitlines() if not line.startswith((" ", "{", "}", "]"))
    )
    context = (
        f"\ndriver output:\n{output[-4000:]}\nhunkwise output (no payloads):\n"
        f"{hunkwise_log[-3000:]}\nartifacts: {artifacts}"
    )
    steps = {step["name"]: step for step in result.get("steps", [])}
    for name in ("open", "type", "hover", "refine", "instruction", "status", "train"):
        assert steps.get(name, {}).get("ok"), (
            f"step {name} failed: {steps.get(name, {}).get('error') or result.get('error')}"
            + context
        )
    assert result["ok"], result.get("error")
    assert not left, f"processes left running: {left}"

    texts = result["texts"]
    assert texts["base"] == BASE_TEXT
    # a. The keystrokes typed exactly the change, and the finding is on its lines.
    assert texts["edited"] == edited_text()
    # Where and what `hunkwise review` prints for the same change (1-based in Problems).
    (repo.path / "totals.py").write_text(texts["edited"], encoding="utf-8")
    (finding,) = cli_findings(repo.path, tiny_bundle, repo.env)
    cli_line, cli_column, cli_texts = as_the_cli_says(finding)
    messages = []
    for problem in (result["diagnostic"]["problems"], result["diagnostic"]["problemsAtHover"]):
        found = re.match(
            r"^(\w+): (.*) at line (\d+) and character (\d+)\. generated by (\S+)$", problem
        )
        assert found, problem
        severity, message, line, column, source = found.groups()
        assert (severity, source) == ("Info", "hunkwise"), problem
        assert CHANGE["start"] < int(line) <= CHANGE["start"] + len(CHANGE["lines"]), problem
        assert (int(line) - 1, int(column) - 1) == (cli_line, cli_column), problem
        assert message in cli_texts, (message, cli_texts)
        messages.append(message)
    assert "squiggly-info" in result["diagnostic"]["squiggle"]
    # b. The hover shows the finding's message (the first one, or the review comment
    # that replaced it meanwhile) and its source.
    assert "hunkwise" in result["hover"], result["hover"]
    assert any(message in result["hover"] for message in messages), (result["hover"], messages)

    trace = lsp_trace(trace_text)
    encoding = "utf-16"
    for item in trace:
        if item["method"] == "initialize" and item["kind"] == "response" and item["body"]:
            encoding = item["body"].get("capabilities", {}).get("positionEncoding", encoding)

    # c. The refinement: the file reads as its resolved edit says, changed in the hunk.
    assert "Apply suggested refinement" in result["codeActions"]
    resolved = [
        item["body"]
        for item in trace
        if item["method"] == "codeAction/resolve"
        and item["kind"] == "response"
        and item["body"]
        and item["body"].get("title") == "Apply suggested refinement"
    ]
    assert resolved, "no resolved refinement in the LSP trace" + context
    edit = resolved[-1]["edit"]
    (refinement,) = text_edits(edit)
    assert texts["refined"] != texts["edited"]
    assert texts["refined"] == apply_workspace_edit(texts["edited"], edit, encoding)
    first_changed = CHANGE["start"]
    last_changed = CHANGE["start"] + len(CHANGE["lines"]) - 1
    assert refinement["range"]["start"]["line"] <= last_changed, refinement
    assert refinement["range"]["end"]["line"] >= first_changed, refinement

    # d. The instruction edit: exactly the server's workspace/applyEdit, on the selection.
    applied = [
        item["body"]["edit"]
        for item in trace
        if item["method"] == "workspace/applyEdit" and item["kind"] == "request" and item["body"]
    ]
    assert applied, "no workspace/applyEdit in the LSP trace" + context
    assert texts["instructed"] != texts["refined"]
    assert texts["instructed"] == apply_workspace_edit(texts["refined"], applied[-1], encoding)
    (instruction_edit,) = text_edits(applied[-1])
    first, last = INSTRUCTION_RANGE
    assert instruction_edit["range"]["start"] == {"line": first - 1, "character": 0}
    assert instruction_edit["range"]["end"]["line"] == last - 1 or instruction_edit["range"][
        "end"
    ] == {"line": last, "character": 0}
    assert texts["instructed"].endswith("".join(texts["refined"].splitlines(True)[last:]))

    # e. The status-bar item: loading, then ready, then reviewing (after the edit).
    kinds = [entry["kind"] for entry in result["status"]]
    assert "loading" in kinds, kinds
    ready = kinds.index("ready", kinds.index("loading"))
    assert "reviewing" in kinds[ready:], kinds
    assert kinds[-1] == "ready", kinds
    texts_shown = [entry.get("text", "") for entry in result["status"]]
    assert not [text for text in texts_shown if "unknown" in text], texts_shown

    # f. Training showed its cancellable notification and the status, was cancelled, and
    # the bundle is the one it was (no file changed, nothing written next to it).
    assert result["trainingShown"], kinds
    assert any("training on this repository" in text for text in result["notifications"])
    assert any("training cancelled" in text for text in result["notifications"])
    assert tree_digest(bundle) == digest
    assert sorted(path.name for path in bundles.iterdir()) == ["bundle"]
