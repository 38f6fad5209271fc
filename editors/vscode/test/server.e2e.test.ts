// The VS Code wiring without VS Code: the real server, started the way the extension
// starts it (same interpreter resolution, command line, working directory and
// initializationOptions builder), driven over stdio with vscode-languageserver-protocol
// as VS Code's language client would: initialize, pull diagnostics for an edited file
// of a temp git repository, a refinement code action resolved to an edit, and command
// round trips (hunkwise.status, hunkwise.editWithInstruction -> workspace/applyEdit).
//
// Needs HUNKWISE_TEST_BUNDLE (a bundle directory) and HUNKWISE_PYTHON (an interpreter
// with hunkwise installed); `pytest tests/test_editor_vscode.py` sets both.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import {
  ApplyWorkspaceEditRequest,
  CodeActionRequest,
  CodeActionResolveRequest,
  ConfigurationRequest,
  createProtocolConnection,
  type Diagnostic,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  DocumentDiagnosticRequest,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  type InitializeResult,
  LogMessageNotification,
  type ProtocolConnection,
  PublishDiagnosticsNotification,
  RegistrationRequest,
  ShowMessageNotification,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  type TextEdit,
  type WorkspaceEdit,
  WorkDoneProgressCreateRequest,
} from "vscode-languageserver-protocol/node";

import {
  CLIENT_COMMANDS,
  editWithInstructionParams,
  plainParams,
  rangeArgument,
  redirectCodeActionCommand,
  SERVER_COMMANDS,
} from "../src/commands";
import { resolveInterpreter, serverCommand } from "../src/interpreter";
import { buildInitializationOptions, configurationAnswer, objectReader, SECTION } from "../src/settings";
import { asServerStatus, type ServerStatus } from "../src/status";

const BUNDLE = process.env.HUNKWISE_TEST_BUNDLE;
const PYTHON = process.env.HUNKWISE_PYTHON;
const SKIP =
  BUNDLE && PYTHON
    ? false
    : "HUNKWISE_TEST_BUNDLE and HUNKWISE_PYTHON are not set (pytest tests/test_editor_vscode.py sets them)";
/** The extension's install folder: where it starts the server (see extension.ts). */
const EXTENSION_ROOT = path.resolve(__dirname, "..", "..");

const BASE_TEXT = [
  "def total(items):",
  "    result = 0",
  "    for item in items:",
  "        result += item",
  "    return result",
  "",
].join("\n");
const EDITED_TEXT = [
  "def total(items):",
  "    result = 0",
  "    for item in items:",
  "        if item is None:",
  "            continue",
  "        result += item * 2",
  "    return result",
  "",
].join("\n");

function gitRepo(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "hunkwise-vscode-"));
  const repo = path.join(root, "repo");
  fs.mkdirSync(repo);
  const env = {
    ...process.env,
    HOME: root,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: path.join(root, ".gitconfig"),
    GIT_AUTHOR_NAME: "Test Author",
    GIT_AUTHOR_EMAIL: "author@example.com",
    GIT_COMMITTER_NAME: "Test Author",
    GIT_COMMITTER_EMAIL: "author@example.com",
  };
  const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, env, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  fs.writeFileSync(path.join(repo, "app.py"), BASE_TEXT);
  git("add", "-A");
  git("commit", "-q", "-m", "Add total");
  return repo;
}

/** Fails with `what` instead of hanging when `promise` takes longer than `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Session {
  connection: ProtocolConnection;
  child: ChildProcess;
  applied: WorkspaceEdit[];
  messages: string[];
  stderr: string[];
}

/** Starts the server as the extension does and answers what VS Code's client answers. */
function startServer(userSettings: Record<string, unknown>, workspaceFolder: string): Session {
  // The extension: hunkwise.pythonPath -> interpreter -> `python -m server`, cwd = its folder.
  const interpreter = resolveInterpreter({ configured: String(userSettings.pythonPath ?? "") });
  assert.equal(interpreter.source, "setting");
  const { command, args } = serverCommand(interpreter.path);
  const child = spawn(command, args, { cwd: EXTENSION_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const connection = createProtocolConnection(
    new StreamMessageReader(child.stdout!),
    new StreamMessageWriter(child.stdin!),
  );
  const session: Session = { connection, child, applied: [], messages: [], stderr };
  const context = { workspaceFolder };
  // VS Code answers with the whole `hunkwise` section (client keys included); the
  // extension's middleware reduces it with configurationAnswer.
  connection.onRequest(ConfigurationRequest.type, (params) =>
    params.items.map((item) =>
      configurationAnswer(item.section, item.section === SECTION ? userSettings : null, context),
    ),
  );
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => null);
  connection.onRequest(RegistrationRequest.type, () => undefined);
  connection.onRequest("workspace/diagnostic/refresh", () => null);
  connection.onRequest(ApplyWorkspaceEditRequest.type, (params) => {
    session.applied.push(params.edit);
    return { applied: true };
  });
  connection.onNotification(ShowMessageNotification.type, (params) => session.messages.push(params.message));
  connection.onNotification(LogMessageNotification.type, (params) => session.messages.push(params.message));
  connection.onNotification(PublishDiagnosticsNotification.type, () => undefined);
  connection.listen();
  return session;
}

function interpreterLine(userSettings: { pythonPath?: string }): string {
  const { command, args } = serverCommand(resolveInterpreter({ configured: userSettings.pythonPath }).path);
  return [command, ...args].join(" ");
}

/** The text edits of a workspace edit for `uri` (documentChanges or changes). */
function editsFor(edit: WorkspaceEdit, uri: string): TextEdit[] {
  const edits: TextEdit[] = [];
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change && change.textDocument.uri === uri) {
      edits.push(...(change.edits as TextEdit[]));
    }
  }
  edits.push(...(edit.changes?.[uri] ?? []));
  return edits;
}

test("the extension's server: initialize, diagnostics, code action, commands", { skip: SKIP, timeout: 150_000 }, async (t) => {
  const repo = gitRepo();
  const uri = pathToFileURL(path.join(repo, "app.py")).href;
  const userSettings = {
    pythonPath: PYTHON,
    bundle: BUNDLE,
    device: "cpu",
    threshold: 0, // an untrained bundle's probabilities are arbitrary: flag every hunk
    debounceMs: 50,
    maxNewTokens: 8,
    comments: true,
    trace: { server: "off" },
  };
  const session = startServer(userSettings, repo);
  const { connection, child } = session;
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  try {
    const initializationOptions = buildInitializationOptions(objectReader(userSettings), { workspaceFolder: repo });
    assert.ok(!("pythonPath" in initializationOptions));
    const result: InitializeResult = await within(
      60_000,
      "initialize",
      connection.sendRequest(InitializeRequest.type, {
        processId: process.pid,
        clientInfo: { name: "hunkwise-vscode-wiring-test" },
        rootUri: pathToFileURL(repo).href,
        workspaceFolders: [{ uri: pathToFileURL(repo).href, name: "repo" }],
        initializationOptions,
        capabilities: {
          workspace: {
            configuration: true,
            applyEdit: true,
            workspaceEdit: { documentChanges: true },
            didChangeConfiguration: { dynamicRegistration: true },
            diagnostics: { refreshSupport: true },
            executeCommand: { dynamicRegistration: true },
            workspaceFolders: true,
          },
          textDocument: {
            synchronization: { dynamicRegistration: true, didSave: true },
            diagnostic: { dynamicRegistration: true, relatedDocumentSupport: false },
            hover: { contentFormat: ["markdown", "plaintext"] },
            codeAction: {
              codeActionLiteralSupport: {
                codeActionKind: { valueSet: ["", "quickfix", "refactor", "refactor.rewrite"] },
              },
              dataSupport: true,
              resolveSupport: { properties: ["edit"] },
            },
            publishDiagnostics: { relatedInformation: true },
          },
          window: { workDoneProgress: true, showMessage: {} },
        },
      }),
    );
    assert.equal(result.serverInfo?.name, "hunkwise");
    const commands = result.capabilities.executeCommandProvider?.commands ?? [];
    for (const name of Object.values(SERVER_COMMANDS)) {
      assert.ok(commands.includes(name), `the server registers ${name}`);
    }
    assert.ok(result.capabilities.diagnosticProvider, "pull diagnostics (VS Code's client pulls)");
    await connection.sendNotification(InitializedNotification.type, {});
    t.diagnostic(`started: ${interpreterLine(userSettings)}; initializationOptions ${JSON.stringify(initializationOptions)}`);
    t.diagnostic(`initialize: server ${result.serverInfo?.name} ${result.serverInfo?.version}, commands ${commands.join(", ")}`);

    // hunkwise.status round trip: wait for the bundle to load.
    let status: ServerStatus | undefined;
    for (let tries = 0; tries < 240; tries += 1) {
      status = asServerStatus(await connection.sendRequest(ExecuteCommandRequest.type, plainParams(SERVER_COMMANDS.status)));
      if (status && status.state !== "loading") {
        break;
      }
      await sleep(250);
    }
    assert.equal(status?.state, "ready", `status: ${JSON.stringify(status)}\n${session.messages.join("\n")}`);
    assert.equal(fs.realpathSync(String(status?.bundle)), fs.realpathSync(BUNDLE!));
    t.diagnostic(`hunkwise.status: ${JSON.stringify(status)}`);

    // An edited file: open with the committed text, then type the change.
    await connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: "python", version: 1, text: BASE_TEXT },
    });
    await connection.sendNotification(DidChangeTextDocumentNotification.type, {
      textDocument: { uri, version: 2 },
      contentChanges: [{ text: EDITED_TEXT }],
    });
    let diagnostics: Diagnostic[] = [];
    for (let tries = 0; tries < 20 && diagnostics.length === 0; tries += 1) {
      const report = await within(
        90_000,
        "textDocument/diagnostic",
        connection.sendRequest(DocumentDiagnosticRequest.type, { textDocument: { uri } }),
      );
      diagnostics = report.kind === "full" ? report.items : diagnostics;
      if (diagnostics.length === 0) {
        await sleep(250);
      }
    }
    assert.ok(diagnostics.length > 0, `no diagnostics; messages:\n${session.messages.join("\n")}`);
    const finding = diagnostics[0];
    assert.equal(finding.source, "hunkwise");
    assert.equal(finding.code, "review-needed");
    assert.equal(finding.range.start.line, 3, "the hunk's added lines start at line 4");
    const data = finding.data as { hunk?: string; p?: number };
    assert.equal(typeof data.hunk, "string");
    assert.ok(typeof data.p === "number" && data.p >= 0 && data.p <= 1);
    for (const item of diagnostics) {
      t.diagnostic(`textDocument/diagnostic: line ${item.range.start.line + 1}-${item.range.end.line + 1} [${item.source}/${item.code}] ${JSON.stringify(item.message)}`);
    }

    // The refinement quick fix; VS Code resolves its edit with codeAction/resolve.
    const actions =
      (await connection.sendRequest(CodeActionRequest.type, {
        textDocument: { uri },
        range: finding.range,
        context: { diagnostics: [finding] },
      })) ?? [];
    const refine = actions.find((action) => "kind" in action && action.kind === "quickfix" && action.isPreferred);
    assert.ok(refine && "kind" in refine, `actions: ${JSON.stringify(actions)}`);
    // The server's "Edit selection with instruction…" carries no instruction: the
    // extension's middleware turns it into its own command, which asks for one.
    const editAction = actions.find(
      (action) => "kind" in action && action.command?.command === SERVER_COMMANDS.editWithInstruction,
    );
    assert.ok(editAction && "kind" in editAction && editAction.command);
    const redirected = redirectCodeActionCommand(editAction.command);
    assert.equal(redirected.command, CLIENT_COMMANDS.editSelection);
    assert.deepEqual(rangeArgument(redirected.arguments)?.uri, uri);
    const resolved = await within(60_000, "codeAction/resolve", connection.sendRequest(CodeActionResolveRequest.type, refine));
    assert.ok(resolved.edit, "the resolved refinement carries an edit");
    assert.ok(editsFor(resolved.edit, uri).length > 0);
    t.diagnostic(`textDocument/codeAction: ${actions.map((action) => JSON.stringify(action.title)).join(", ")}; resolved ${JSON.stringify(refine.title)} to ${editsFor(resolved.edit, uri).length} edit(s)`);

    // hunkwise.editWithInstruction -> workspace/applyEdit -> {"applied": true}.
    const range = { start: { line: 0, character: 0 }, end: { line: 1, character: 14 } };
    const answer = (await within(
      60_000,
      "hunkwise.editWithInstruction",
      connection.sendRequest(ExecuteCommandRequest.type, editWithInstructionParams(uri, range, "Add a docstring")),
    )) as { applied?: boolean };
    assert.deepEqual(answer, { applied: true });
    assert.equal(session.applied.length, 1);
    const edits = editsFor(session.applied[0], uri);
    assert.equal(edits.length, 1);
    assert.deepEqual(edits[0].range.start, range.start, "the edit replaces the selection");
    t.diagnostic(`hunkwise.editWithInstruction -> workspace/applyEdit ${JSON.stringify(edits[0].range)} -> ${JSON.stringify(answer)}`);

    const stopping = Date.now();
    await within(30_000, "shutdown", connection.sendRequest(ShutdownRequest.type));
    await connection.sendNotification(ExitNotification.type);
    assert.equal(await within(15_000, "exit", exited), 0);
    t.diagnostic(`shutdown + exit: the server exited with 0 after ${Date.now() - stopping} ms`);
  } catch (error) {
    const tail = session.stderr.join("").split("\n").slice(-30).join("\n");
    throw new Error(`${String(error)}\n--- server stderr (tail) ---\n${tail}`, { cause: error });
  } finally {
    connection.dispose();
    if (child.exitCode === null) {
      child.kill();
    }
    fs.rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});
