// The arguments of the server's commands, and the code action redirect.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLIENT_COMMANDS,
  editWithInstructionParams,
  rangeArgument,
  redirectCodeActionCommand,
  SERVER_COMMANDS,
  trainFromRepoParams,
} from "../src/commands";

const RANGE = { start: { line: 2, character: 0 }, end: { line: 4, character: 7 } };

test("editWithInstruction sends {uri, range, instruction}", () => {
  assert.deepEqual(editWithInstructionParams("file:///r/a.py", RANGE, "  add type hints "), {
    command: "hunkwise.editWithInstruction",
    arguments: [{ uri: "file:///r/a.py", range: RANGE, instruction: "add type hints" }],
  });
});

test("trainFromRepo sends only the arguments given", () => {
  assert.deepEqual(trainFromRepoParams("tiny").arguments, [{ base: "tiny" }]);
  assert.deepEqual(trainFromRepoParams(" ", []).arguments, [{}]);
  assert.deepEqual(trainFromRepoParams("Qwen/Qwen2.5-Coder-1.5B-Instruct", ["rnp", "rcg"]).arguments, [
    { base: "Qwen/Qwen2.5-Coder-1.5B-Instruct", tasks: ["rnp", "rcg"] },
  ]);
});

test("client command ids never collide with the server's (the client registers those)", () => {
  const server = new Set<string>(Object.values(SERVER_COMMANDS));
  for (const id of Object.values(CLIENT_COMMANDS)) {
    assert.ok(!server.has(id), id);
  }
});

test("the server's instruction-less edit action asks for an instruction first", () => {
  const action = { title: "Edit selection with instruction…", command: SERVER_COMMANDS.editWithInstruction, arguments: [{ uri: "file:///a", range: RANGE }] };
  const redirected = redirectCodeActionCommand(action);
  assert.equal(redirected.command, CLIENT_COMMANDS.editSelection);
  assert.deepEqual(redirected.arguments, action.arguments);
  assert.equal(redirected.title, action.title);
  assert.deepEqual(rangeArgument(redirected.arguments), { uri: "file:///a", range: RANGE });
});

test("other commands, and edits that carry an instruction, are left alone", () => {
  const refine = { title: "Apply suggested refinement", command: SERVER_COMMANDS.applyRefinement, arguments: [{ uri: "u", hunk: "h" }] };
  assert.equal(redirectCodeActionCommand(refine), refine);
  const edit = { title: "t", command: SERVER_COMMANDS.editWithInstruction, arguments: [{ uri: "u", range: RANGE, instruction: "x" }] };
  assert.equal(redirectCodeActionCommand(edit), edit);
});

test("rangeArgument rejects what is not {uri, range}", () => {
  assert.equal(rangeArgument(undefined), undefined);
  assert.equal(rangeArgument([{ uri: "u" }]), undefined);
  assert.equal(rangeArgument([{ uri: 1, range: RANGE }]), undefined);
  assert.equal(rangeArgument(["file:///a"]), undefined);
});
