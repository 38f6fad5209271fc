// The bundled extension (dist/extension.js, what the .vsix ships) loads and exports
// activate/deactivate. `vscode` exists only inside VS Code, so loading it here gets a
// STAND-IN module whose every member is an empty function (the language client
// subclasses some of vscode's classes at load time); nothing calls into it.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import Module from "node:module";
import * as path from "node:path";
import { test } from "node:test";

const BUNDLE = path.join(__dirname, "..", "..", "dist", "extension.js");

test("dist/extension.js loads and exports activate and deactivate", { skip: !fs.existsSync(BUNDLE) && "run npm run build first" }, () => {
  const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const load = loader._load;
  const standIn = new Proxy({}, { get: () => function StandIn() {} });
  loader._load = (request: string, ...rest: unknown[]) => (request === "vscode" ? standIn : load(request, ...rest));
  try {
    const extension = loader._load(BUNDLE) as Record<string, unknown>;
    assert.equal(typeof extension.activate, "function");
    assert.equal(typeof extension.deactivate, "function");
  } finally {
    loader._load = load;
  }
});
