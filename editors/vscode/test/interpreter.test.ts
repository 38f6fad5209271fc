// Which Python starts the server, and how.
import assert from "node:assert/strict";
import { test } from "node:test";

import { resolveInterpreter, serverCommand, startFailureMessage } from "../src/interpreter";

test("hunkwise.pythonPath wins over the Python extension's interpreter", () => {
  const chosen = resolveInterpreter({ configured: "/opt/venv/bin/python", fromPythonExtension: "/usr/bin/python3.12" });
  assert.deepEqual(chosen, { path: "/opt/venv/bin/python", source: "setting" });
});

test("the setting expands ${workspaceFolder} and ~", () => {
  const context = { workspaceFolder: "/work/repo", home: "/home/ada" };
  assert.equal(
    resolveInterpreter({ configured: "${workspaceFolder}/.venv/bin/python", context }).path,
    "/work/repo/.venv/bin/python",
  );
  assert.equal(resolveInterpreter({ configured: "~/venv/bin/python", context }).path, "/home/ada/venv/bin/python");
});

test("an empty setting falls back to the Python extension, then to python3", () => {
  assert.deepEqual(resolveInterpreter({ configured: "  ", fromPythonExtension: "/envs/a/bin/python" }), {
    path: "/envs/a/bin/python",
    source: "python-extension",
  });
  assert.deepEqual(resolveInterpreter({ platform: "linux" }), { path: "python3", source: "default" });
  assert.deepEqual(resolveInterpreter({ platform: "win32" }), { path: "python", source: "default" });
});

test("the server is python -m server over stdio", () => {
  assert.deepEqual(serverCommand("/v/bin/python"), { command: "/v/bin/python", args: ["-m", "server"] });
});

test("a start failure names the interpreter, where it came from, and the fix", () => {
  const message = startFailureMessage({ path: "/v/bin/python", source: "setting" }, "exit code 1");
  assert.match(message, /\/v\/bin\/python/);
  assert.match(message, /hunkwise\.pythonPath/);
  assert.match(message, /pip install hunkwise/);
});
