// Drives the hunkwise extension in real VS Code: code-server in headless Chromium, with
// playwright-core (installed by setup-code-server.sh next to code-server, outside the
// repository). tests/test_editor_vscode_real.py starts code-server on a temp git
// repository and runs this with a JSON config:
//
//   node drive.mjs CONFIG.json        (or HUNKWISE_E2E_CONFIG='{...}' node drive.mjs)
//
// config: url (code-server, with ?folder=), file (the committed python file, absolute),
// artifacts (a folder: one screenshot per step, result.json), profile (Chromium's
// profile folder), chromium, playwright (the node_modules folder holding
// playwright-core), change {line (1-based), lines}, selection [first, last] (1-based
// lines), instruction, timeoutMs (per step).
//
// The steps, each with real keystrokes and mouse clicks in the workbench:
//   open        the file opens; the status-bar item reaches "ready"
//   type        the change is typed and saved; a hunkwise finding appears in Problems
//   hover       hovering the squiggle shows the finding's message
//   refine      Ctrl+. on the finding, "Apply suggested refinement"; saved
//   instruction the command palette's "Hunkwise: Edit Selection with Instruction…" on a
//               selection, an instruction typed into its input box; saved
//   status      the item went starting/loading -> ready -> reviewing (recorded in the page)
//   train       "Hunkwise: Train from Repository" shows a cancellable notification; its
//               Cancel stops the training ("training cancelled")
// result.json: ok, error, steps [{name, ok, ms, error, screenshot}], texts (the file on
// disk after each step), diagnostic, hover, status (the item's texts over time),
// notifications. The checks of the file texts against the server's edits are pytest's.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

const config = JSON.parse(
  process.argv[2] ? fs.readFileSync(process.argv[2], "utf8") : process.env.HUNKWISE_E2E_CONFIG ?? "{}",
);
const require = createRequire(path.join(config.playwright, "noop.js"));
const { chromium } = require("playwright-core");

const STEP_MS = config.timeoutMs ?? 60_000;
const artifacts = config.artifacts;
fs.mkdirSync(artifacts, { recursive: true });
const result = {
  ok: false,
  error: null,
  steps: [],
  texts: {},
  diagnostic: null,
  hover: null,
  status: [],
  notifications: [],
  console: [],
};
const started = Date.now();
const log = (message) => console.log(`[drive ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);

const STATUS_SELECTOR = '[id$="hunkwise.status"].statusbar-item';

/** Installed in the page before VS Code loads: records every text the status item shows. */
function recordStatus(selector) {
  const seen = [];
  window.__hunkwiseStatus = seen;
  const sample = () => {
    const label = document.querySelector(`${selector} .statusbar-item-label`);
    if (!label) {
      return;
    }
    const text = (label.textContent ?? "").trim();
    const icon = [...label.querySelectorAll(".codicon")].map((node) => node.className).join(" ");
    const last = seen[seen.length - 1];
    if (!last || last.text !== text || last.icon !== icon) {
      seen.push({ t: Date.now(), text, icon });
    }
  };
  const start = () => {
    new MutationObserver(sample).observe(document.body, { subtree: true, childList: true, characterData: true });
    sample();
  };
  setInterval(sample, 25);
  if (document.body) {
    start();
  } else {
    document.addEventListener("DOMContentLoaded", start);
  }
}

/** What a recorded status text means: starting, loading, ready, reviewing, training, ... */
function statusKind(entry) {
  if (entry.text === "hunkwise" && entry.icon.includes("codicon-check")) {
    return "ready";
  }
  const match = /^hunkwise: (\S+)/.exec(entry.text);
  return match ? match[1] : entry.text;
}

async function main() {
  const profile = config.profile ?? path.join(artifacts, "chromium-profile");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
      "--no-default-browser-check",
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    page.on("console", (message) => {
      if (message.type() === "error" && result.console.length < 50) {
        result.console.push(message.text().slice(0, 300));
      }
    });
    await page.addInitScript(recordStatus, STATUS_SELECTOR);
    await run(page);
    result.ok = result.steps.every((step) => step.ok);
  } finally {
    await context.close().catch(() => {});
  }
}

async function step(page, name, body) {
  const begin = Date.now();
  log(`${name} ...`);
  const entry = { name, ok: false, ms: 0, error: null, screenshot: null };
  result.steps.push(entry);
  const screenshot = `${String(result.steps.length).padStart(2, "0")}-${name}.png`;
  let captured = false;
  // The step's screenshot, taken by the step at its most telling moment (a menu or a
  // hover open); else, and always on failure, at its end.
  const capture = async () => {
    await page.screenshot({ path: path.join(artifacts, screenshot) });
    captured = true;
  };
  try {
    await body(capture);
    entry.ok = true;
  } catch (error) {
    entry.error = String(error?.stack ?? error);
    result.error = `${name}: ${String(error?.message ?? error)}`;
  } finally {
    entry.ms = Date.now() - begin;
    entry.screenshot = screenshot;
    if (!captured || !entry.ok) {
      await page.screenshot({ path: path.join(artifacts, screenshot) }).catch(() => {});
    }
    result.status = await statusHistory(page);
    log(`${name} ${entry.ok ? "ok" : "FAILED"} in ${entry.ms} ms`);
  }
  if (!entry.ok) {
    throw new Error(result.error);
  }
}

async function statusHistory(page) {
  const seen = await page.evaluate(() => window.__hunkwiseStatus ?? []).catch(() => []);
  return seen.map((entry) => ({ ...entry, t: entry.t - started, kind: statusKind(entry) }));
}

async function waitForStatus(page, kind, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const seen = await statusHistory(page);
    if (seen.length && seen[seen.length - 1].kind === kind) {
      return;
    }
    await page.waitForTimeout(100);
  }
  const seen = await statusHistory(page);
  throw new Error(`the status item never showed ${kind}; it showed ${JSON.stringify(seen.map((e) => e.text))}`);
}

const readFile = () => fs.readFileSync(config.file, "utf8");

/** Poll ``check`` until it returns a truthy value. */
async function until(page, what, check, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    }
    await page.waitForTimeout(150);
  }
}

const activeTab = (page) => page.locator(".tabs-container .tab.active");

/** Ctrl+S, then wait until the tab is clean and the file on disk is ``previous`` no more. */
async function saveAndRead(page, previous) {
  await until(page, "the editor to be modified", async () => /\bdirty\b/.test((await activeTab(page).getAttribute("class")) ?? ""));
  await focusEditor(page);
  await page.keyboard.press("Control+S");
  await until(page, "the save", async () => !/\bdirty\b/.test((await activeTab(page).getAttribute("class")) ?? ""));
  return until(page, "the file on disk to change", async () => {
    const text = readFile();
    return text !== previous ? text : null;
  });
}

async function focusEditor(page) {
  await page.locator(".editor-instance .monaco-editor textarea.inputarea").first().focus();
}

async function gotoLine(page, line) {
  await focusEditor(page);
  await page.keyboard.press("Control+G");
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.waitFor({ state: "visible" });
  await page.keyboard.type(String(line));
  await page.keyboard.press("Enter");
  await page.locator(".quick-input-widget").waitFor({ state: "hidden" });
}

/** F1, then the command whose palette label is ``label``. */
async function runCommand(page, label) {
  await focusEditor(page);
  await page.keyboard.press("F1");
  const widget = page.locator(".quick-input-widget");
  await widget.locator(".quick-input-box input").waitFor({ state: "visible" });
  await page.keyboard.type(label, { delay: 10 });
  const row = widget.locator(".quick-input-list .monaco-list-row", { hasText: label }).first();
  await row.waitFor({ state: "visible" });
  await until(page, `"${label}" to be the palette's first match`, async () =>
    ((await widget.locator(".quick-input-list .monaco-list-row.focused").first().textContent()) ?? "").includes(label),
  );
  await page.keyboard.press("Enter");
}

/** The quick input's box once its title reads ``title``; ``text`` typed, then Enter. */
async function answerInputBox(page, title, text, capture) {
  const widget = page.locator(".quick-input-widget");
  await widget.locator(".quick-input-title", { hasText: title }).waitFor({ state: "visible" });
  const input = widget.locator(".quick-input-box input");
  if (text !== undefined) {
    await input.press("Control+A");
    await page.keyboard.type(text, { delay: 10 });
  }
  await capture?.();
  await page.keyboard.press("Enter");
  await widget.waitFor({ state: "hidden" });
}

const problemRow = (page) => page.locator(".markers-panel .monaco-list-row", { hasText: "hunkwise" }).first();

/** The Problems row of the finding, as its aria-label reads it (severity, message, where). */
async function problemText(page) {
  const row = problemRow(page);
  return ((await row.getAttribute("aria-label")) ?? (await row.textContent()) ?? "").trim();
}

async function toastTexts(page) {
  const messages = page.locator(".notifications-toasts .notification-toast .notification-list-item-message");
  return (await messages.allTextContents().catch(() => [])).map((text) => text.trim());
}

async function run(page) {
  const base = readFile();
  result.texts.base = base;

  await step(page, "open", async () => {
    await page.goto(config.url, { timeout: STEP_MS });
    await page.locator(".monaco-workbench").waitFor({ state: "visible" });
    await page.locator(STATUS_SELECTOR).waitFor({ state: "attached" });
    // Quick Open: the file by name.
    await page.locator(".monaco-workbench .part.editor").click();
    await page.keyboard.press("Control+P");
    await page.locator(".quick-input-widget .quick-input-box input").waitFor({ state: "visible" });
    await page.keyboard.type(path.basename(config.file), { delay: 10 });
    await page
      .locator(".quick-input-widget .quick-input-list .monaco-list-row", { hasText: path.basename(config.file) })
      .first()
      .waitFor({ state: "visible" });
    await page.keyboard.press("Enter");
    await activeTab(page).filter({ hasText: path.basename(config.file) }).waitFor({ state: "visible" });
    await page.locator(".editor-instance .monaco-editor .view-lines").first().waitFor({ state: "visible" });
    await waitForStatus(page, "ready", Math.max(STEP_MS, 120_000));
  });

  await step(page, "type", async () => {
    const { line, lines } = config.change;
    await gotoLine(page, line);
    await page.keyboard.press("Home");
    await page.keyboard.press("Home"); // the first press stops at the indentation
    await page.keyboard.press("Shift+End");
    for (const [index, text] of lines.entries()) {
      if (index > 0) {
        await page.keyboard.press("Enter");
      }
      await page.keyboard.type(text, { delay: 15 });
    }
    result.texts.edited = await saveAndRead(page, base);
    await page.keyboard.press("Control+Shift+M"); // Problems
    await problemRow(page).waitFor({ state: "visible", timeout: Math.max(STEP_MS, 90_000) });
    result.diagnostic = { problems: await problemText(page) };
  });

  await step(page, "hover", async (capture) => {
    const squiggle = page.locator(".editor-instance .monaco-editor .view-overlays [class*='squiggly-']").first();
    await squiggle.waitFor({ state: "attached" });
    const box = await until(page, "the squiggle to be laid out", () => squiggle.boundingBox());
    result.diagnostic.squiggle = (await squiggle.getAttribute("class")) ?? "";
    const hover = page.locator(".monaco-hover:not(.hidden) .monaco-hover-content", { hasText: "hunkwise" }).first();
    // Move onto the squiggle from outside it, so the editor sees a real mouse move.
    await page.mouse.move(box.x + box.width / 2, box.y + box.height + 40);
    await page.mouse.move(box.x + Math.min(box.width / 2, 40), box.y + box.height / 2, { steps: 5 });
    try {
      await hover.waitFor({ state: "visible", timeout: 10_000 });
    } catch {
      log("no hover from the mouse; Ctrl+K Ctrl+I at the finding");
      await gotoLine(page, config.change.line);
      await page.keyboard.press("Control+K");
      await page.keyboard.press("Control+I");
      await hover.waitFor({ state: "visible" });
    }
    result.hover = ((await hover.textContent()) ?? "").trim();
    // The finding's message as Problems shows it now: the review comment, when it
    // arrives, replaces the first message, maybe while this step runs.
    result.diagnostic.problemsAtHover = await problemText(page);
    await capture();
    await page.mouse.move(5, 400);
    await page.keyboard.press("Escape");
  });

  await step(page, "refine", async (capture) => {
    await gotoLine(page, config.change.line);
    await page.keyboard.press("Control+.");
    const widget = page.locator(".action-widget");
    const item = widget.locator(".monaco-list-row", { hasText: "Apply suggested refinement" }).first();
    await item.waitFor({ state: "visible" });
    result.codeActions = (await widget.locator(".monaco-list-row").allTextContents()).map((t) => t.trim());
    // The keyboard, as a user at the light bulb menu would: a click lands on the menu's
    // pointer block until the mouse has moved over it.
    await until(page, "the refinement to be the focused action", async () => {
      const focused = widget.locator(".monaco-list-row.focused").first();
      if ((await focused.getAttribute("aria-label").catch(() => null)) === "Apply suggested refinement") {
        return true;
      }
      await page.keyboard.press("ArrowDown");
      return false;
    });
    await capture();
    await page.keyboard.press("Enter");
    result.texts.refined = await saveAndRead(page, result.texts.edited);
  });

  await step(page, "instruction", async (capture) => {
    const [first, last] = config.selection;
    await gotoLine(page, first);
    await page.keyboard.press("Home");
    await page.keyboard.press("Home");
    for (let line = first; line < last; line += 1) {
      await page.keyboard.press("Shift+ArrowDown");
    }
    await page.keyboard.press("Shift+End");
    await runCommand(page, "Hunkwise: Edit Selection with Instruction");
    await answerInputBox(page, "Hunkwise: Edit Selection with Instruction", config.instruction, capture);
    result.texts.instructed = await saveAndRead(page, result.texts.refined);
  });

  await step(page, "status", async () => {
    const kinds = (await statusHistory(page)).map((entry) => entry.kind);
    const ready = kinds.indexOf("ready");
    const loading = kinds.indexOf("loading");
    if (loading < 0 || ready < loading) {
      throw new Error(`no "loading" before "ready": ${JSON.stringify(kinds)}`);
    }
    if (kinds.indexOf("reviewing", ready) < 0) {
      throw new Error(`no "reviewing" after "ready": ${JSON.stringify(kinds)}`);
    }
  });

  await step(page, "train", async (capture) => {
    await waitForStatus(page, "ready");
    await runCommand(page, "Hunkwise: Train from Repository");
    await answerInputBox(page, "Hunkwise: Train from Repository"); // the default: tiny
    const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "training on this repository" });
    await toast.waitFor({ state: "visible" });
    const cancel = toast.locator(".monaco-button", { hasText: "Cancel" });
    await cancel.waitFor({ state: "visible" });
    // The toast slides in from below: the screenshot once it is all on the screen.
    const height = page.viewportSize().height;
    await until(page, "the notification to finish sliding in", async () => {
      const box = await cancel.boundingBox();
      return box && box.y + box.height <= height;
    }, 5_000).catch(() => {});
    await capture();
    result.notifications.push(...(await toastTexts(page)));
    await cancel.click();
    const cancelled = page.locator(".notifications-toasts .notification-toast", { hasText: "training cancelled" });
    await cancelled.waitFor({ state: "visible" });
    result.notifications.push(...(await toastTexts(page)));
    await waitForStatus(page, "ready");
    const kinds = (await statusHistory(page)).map((entry) => entry.kind);
    result.trainingShown = kinds.includes("training");
  });
}

try {
  await main();
} catch (error) {
  result.error ??= String(error?.stack ?? error);
} finally {
  result.seconds = (Date.now() - started) / 1000;
  fs.writeFileSync(path.join(artifacts, "result.json"), JSON.stringify(result, null, 2));
  log(`${result.ok ? "all steps passed" : `FAILED: ${result.error}`}; ${path.join(artifacts, "result.json")}`);
}
process.exit(result.ok ? 0 : 1);
