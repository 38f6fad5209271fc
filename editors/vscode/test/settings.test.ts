// The settings the extension sends: initializationOptions and workspace/configuration answers.
import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";

import {
  buildInitializationOptions,
  configurationAnswer,
  expandPath,
  objectReader,
  SERVER_SETTING_KEYS,
} from "../src/settings";

test("initializationOptions carry every set server key under its own name", () => {
  const values: Record<string, unknown> = {
    bundle: "/bundles/flask",
    device: "cpu",
    threshold: 0.4,
    diffBase: "origin/main",
    debounceMs: 200,
    maxNewTokens: 64,
    maxInstructionChars: 500,
    comments: false,
    severity: "warning",
    exclude: ["docs/**"],
    engine: "http://gpu-box:8000",
    engineModel: "hunkwise:{task}",
    pythonPath: "/usr/bin/python3",
  };
  const options = buildInitializationOptions(objectReader(values));
  assert.deepEqual(Object.keys(options), [...SERVER_SETTING_KEYS]);
  assert.equal(options.threshold, 0.4);
  assert.equal(options.comments, false, "false is a value, not an unset key");
  assert.deepEqual(options.exclude, ["docs/**"]);
  assert.ok(!("pythonPath" in options), "client-only settings stay in the client");
});

test("unset, null and empty values are left out so the server's defaults apply", () => {
  const options = buildInitializationOptions(objectReader({ bundle: "", device: null, threshold: 0 }));
  assert.deepEqual(options, { threshold: 0 });
});

test("the bundle path expands ${workspaceFolder}, ${userHome} and ~", () => {
  const context = { workspaceFolder: "/work/repo", home: "/home/ada" };
  const read = objectReader({ bundle: "${workspaceFolder}/.bundle" });
  assert.equal(buildInitializationOptions(read, context).bundle, "/work/repo/.bundle");
  assert.equal(expandPath("~/b", context), path.join("/home/ada", "b"));
  assert.equal(expandPath("${userHome}/b", context), "/home/ada/b");
  assert.equal(expandPath("relative/b", context), "relative/b", "the server resolves relative paths");
  assert.equal(expandPath("${workspaceFolder}/b", {}), "${workspaceFolder}/b", "no folder: kept as typed");
});

test("workspace/configuration answers for the hunkwise section hold only server keys", () => {
  const answer = { threshold: 0.7, pythonPath: "/x/python", trace: { server: "off" }, exclude: [] };
  assert.deepEqual(configurationAnswer("hunkwise", answer), { threshold: 0.7, exclude: [] });
  assert.deepEqual(configurationAnswer("hunkwise", null), {});
  assert.equal(configurationAnswer("editor", answer), answer, "other sections pass unchanged");
});
