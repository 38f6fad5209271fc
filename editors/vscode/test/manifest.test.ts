// package.json contributes the server's settings by their names, and the commands.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { CLIENT_COMMANDS } from "../src/commands";
import { CLIENT_SETTING_KEYS, SECTION, SERVER_SETTING_KEYS } from "../src/settings";

const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));
const properties: Record<string, { default?: unknown }> = manifest.contributes.configuration.properties;

test("every server key and client key is contributed, nothing else", () => {
  const expected = [...SERVER_SETTING_KEYS, ...CLIENT_SETTING_KEYS].map((key) => `${SECTION}.${key}`).sort();
  assert.deepEqual(Object.keys(properties).sort(), expected);
});

test("defaults are the contract's (docs/architecture.md section 6)", () => {
  assert.equal(properties["hunkwise.threshold"].default, null); // the bundle's own threshold
  assert.equal(properties["hunkwise.diffBase"].default, "HEAD");
  assert.equal(properties["hunkwise.device"].default, "auto");
  assert.equal(properties["hunkwise.comments"].default, true);
  assert.deepEqual(properties["hunkwise.exclude"].default, []);
});

test("every command the extension registers is contributed with a Hunkwise title", () => {
  const contributed = new Map<string, { title: string; category: string }>(
    manifest.contributes.commands.map((entry: { command: string; title: string; category: string }) => [entry.command, entry]),
  );
  for (const id of Object.values(CLIENT_COMMANDS)) {
    assert.equal(contributed.get(id)?.category, "Hunkwise", id);
  }
  assert.equal(contributed.size, Object.values(CLIENT_COMMANDS).length);
  assert.equal(contributed.get(CLIENT_COMMANDS.editSelection)?.title, "Edit Selection with Instruction…");
});
