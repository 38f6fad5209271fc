// The status-bar item's text from hunkwise.status and the server's work-done progress.
import assert from "node:assert/strict";
import { test } from "node:test";

import { activityOf, asServerStatus, describeStatus, StatusModel } from "../src/status";

const READY = { state: "ready", bundle: "/b", adapters: ["rnp", "rcg"], device: "cpu", base: "HEAD", queue: 0, training: false, message: null, version: "0.1.0" };

test("starting, then the server's state", () => {
  const model = new StatusModel();
  assert.match(model.view().text, /starting/);
  model.running();
  // Between the client running and the first hunkwise.status answer: still starting,
  // never "unknown", and polled until the answer comes.
  assert.match(model.view().text, /loading~spin.*starting/);
  assert.ok(model.busy);
  model.setServerStatus({ state: "loading" });
  assert.match(model.view().text, /loading~spin.*loading/);
  assert.ok(model.busy, "loading is polled until it ends");
  model.setServerStatus(READY);
  assert.equal(model.view().text, "$(check) hunkwise");
  assert.match(model.view().tooltip, /adapters: rnp, rcg on cpu/);
  assert.ok(!model.busy);
});

test("no bundle is a warning that says how to get one", () => {
  const model = new StatusModel();
  model.running();
  model.setServerStatus({ state: "no-bundle", message: "no trained bundle at /b" });
  const view = model.view();
  assert.equal(view.text, "$(circle-slash) hunkwise: no bundle");
  assert.equal(view.level, "warning");
  assert.match(view.tooltip, /Train from Repository/);
  assert.match(view.tooltip, /no trained bundle at \/b/);
});

test("work-done progress shows as reviewing, loading or training, with its percentage", () => {
  const model = new StatusModel();
  model.running();
  model.setServerStatus(READY);
  model.progressBegin("t1", "hunkwise: reviewing changed files", undefined, 0);
  assert.equal(model.view().text, "$(loading~spin) hunkwise: reviewing 0%");
  model.progressReport("t1", "src/app.py", 40);
  assert.equal(model.view().text, "$(loading~spin) hunkwise: reviewing 40%");
  assert.match(model.view().tooltip, /src\/app\.py/);
  model.progressBegin("t2", "hunkwise: training on this repository");
  assert.match(model.view().text, /hunkwise: training$/, "training outranks reviewing");
  model.progressEnd("t2");
  model.progressEnd("t1");
  assert.equal(model.view().text, "$(check) hunkwise");
});

test("diagnostic pulls in flight and a queued model show as reviewing", () => {
  const model = new StatusModel();
  model.running();
  model.setServerStatus(READY);
  model.pullStarted();
  assert.match(model.view().text, /reviewing/);
  model.pullEnded();
  model.pullEnded();
  assert.equal(model.view().text, "$(check) hunkwise", "pull count never goes below zero");
  model.setServerStatus({ ...READY, queue: 3 });
  assert.match(model.view().text, /reviewing/);
});

test("a stopped server is an error until restarted", () => {
  const model = new StatusModel();
  model.running();
  model.setServerStatus(READY);
  model.progressBegin("t", "hunkwise: loading the review model");
  model.stopped();
  assert.equal(model.view().level, "error");
  assert.match(model.view().text, /stopped/);
  model.starting();
  assert.match(model.view().text, /starting/);
});

test("progress titles map to activities", () => {
  assert.equal(activityOf("hunkwise: loading the review model"), "loading");
  assert.equal(activityOf("hunkwise: training on this repository"), "training");
  assert.equal(activityOf("hunkwise: reviewing changed files"), "reviewing");
});

test("status answers are checked and described", () => {
  assert.equal(asServerStatus(null), undefined);
  assert.equal(asServerStatus({ applied: true }), undefined);
  assert.equal(asServerStatus(READY), READY);
  assert.equal(describeStatus(undefined), "hunkwise: no status yet");
  assert.equal(
    describeStatus(READY),
    "hunkwise 0.1.0: ready\nbundle: /b\nadapters: rnp, rcg on cpu\ndiff base: HEAD",
  );
});
