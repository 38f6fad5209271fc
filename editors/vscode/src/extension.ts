/**
 * The hunkwise extension: starts `python -m server` with vscode-languageclient, passes
 * the `hunkwise` settings, and adds the commands and the status-bar item. The logic that
 * needs no `vscode` lives in settings.ts, interpreter.ts, commands.ts and status.ts.
 */
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  ResponseError,
  type ServerOptions,
  State,
  TransportKind,
  WorkDoneProgressCancelNotification,
  type WorkDoneProgressBegin,
  type WorkDoneProgressReport,
  type WorkDoneProgressEnd,
} from "vscode-languageclient/node";

import {
  CLIENT_COMMANDS,
  type ExecuteCommandParams,
  editWithInstructionParams,
  type LspRange,
  plainParams,
  rangeArgument,
  redirectCodeActionCommand,
  SERVER_COMMANDS,
  trainFromRepoParams,
} from "./commands";
import { type Interpreter, resolveInterpreter, serverCommand, startFailureMessage } from "./interpreter";
import { onInterpreterChange, selectedInterpreter } from "./pythonExtension";
import { buildInitializationOptions, configurationAnswer, type PathContext, SECTION } from "./settings";
import { type Activity, activityOf, asServerStatus, describeStatus, StatusModel } from "./status";

/** How often the status is polled while something is going on (loading, training). */
const BUSY_POLL_MS = 2000;

/** Receives the server's progress for one kind of work while a command waits for it. */
interface ProgressSink {
  report(message: string | undefined, percentage: number | undefined): void;
}

class Hunkwise implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private interpreter: Interpreter | undefined;
  private readonly status = new StatusModel();
  private readonly item: vscode.StatusBarItem;
  private readonly output: vscode.OutputChannel;
  private readonly sinks = new Map<Activity, ProgressSink>();
  private readonly progressTokens = new Map<string, Activity>();
  private poll: NodeJS.Timeout | undefined;
  private refreshing = false;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel("hunkwise");
    this.item = vscode.window.createStatusBarItem("hunkwise.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "hunkwise";
    this.item.command = CLIENT_COMMANDS.showStatus;
    this.render();
    this.item.show();
    this.disposables.push(this.output, this.item);
  }

  // -- the language client ---------------------------------------------------------------

  private pathContext(): PathContext {
    return { workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath };
  }

  async start(): Promise<void> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const config = vscode.workspace.getConfiguration(SECTION, folder?.uri);
    const context = this.pathContext();
    const interpreter = resolveInterpreter({
      configured: config.get<string>("pythonPath"),
      fromPythonExtension: await selectedInterpreter(folder?.uri),
      context,
    });
    this.interpreter = interpreter;
    const { command, args } = serverCommand(interpreter.path);
    // The extension's own folder as the working directory: `python -m` puts the working
    // directory first on sys.path, and a workspace with its own `server` package must not
    // shadow hunkwise's.
    const serverOptions: ServerOptions = {
      command,
      args,
      transport: TransportKind.stdio,
      options: { cwd: this.context.extensionPath },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }],
      initializationOptions: buildInitializationOptions((key) => config.get(key), context),
      outputChannel: this.output,
      middleware: {
        workspace: {
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (answers instanceof ResponseError) {
              return answers;
            }
            return params.items.map((item, index) =>
              configurationAnswer(item.section, answers[index], this.pathContext()),
            );
          },
        },
        provideCodeActions: async (document, range, actionContext, token, next) => {
          const actions = await next(document, range, actionContext, token);
          return actions?.map((action) => {
            if (action instanceof vscode.CodeAction) {
              if (action.command) {
                action.command = redirectCodeActionCommand(action.command);
              }
              return action;
            }
            return redirectCodeActionCommand(action);
          });
        },
        provideDiagnostics: async (document, previousResultId, token, next) => {
          this.status.pullStarted();
          this.render();
          try {
            return await next(document, previousResultId, token);
          } finally {
            this.status.pullEnded();
            this.render();
          }
        },
        handleWorkDoneProgress: (token, params, next) => {
          this.onProgress(String(token), params);
          next(token, params);
        },
      },
    };
    const client = new LanguageClient("hunkwise", "hunkwise", serverOptions, clientOptions);
    client.onDidChangeState((event) => {
      if (event.newState === State.Running) {
        this.status.running();
      } else if (event.newState === State.Stopped) {
        this.status.stopped();
      } else {
        this.status.starting();
      }
      this.render();
    });
    this.client = client;
    this.status.starting();
    this.render();
    this.output.appendLine(`hunkwise: starting ${command} ${args.join(" ")} (interpreter from ${interpreter.source})`);
    try {
      await client.start();
    } catch (error) {
      this.status.stopped();
      this.render();
      const message = startFailureMessage(interpreter, error instanceof Error ? error.message : String(error));
      this.output.appendLine(message);
      void vscode.window.showErrorMessage(message, "Show Output").then((choice) => {
        if (choice) {
          this.output.show();
        }
      });
      return;
    }
    await this.refreshStatus();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.stopPolling();
    if (client) {
      try {
        await client.stop();
      } catch (error) {
        this.output.appendLine(`hunkwise: stopping the server: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** The running client, or undefined after telling the user why there is none. */
  private running(): LanguageClient | undefined {
    if (this.client?.state === State.Running) {
      return this.client;
    }
    void vscode.window.showWarningMessage(
      "hunkwise: the language server is not running. Check the hunkwise output, then run Hunkwise: Restart Server.",
    );
    return undefined;
  }

  private execute<T>(
    client: LanguageClient,
    params: ExecuteCommandParams,
    token?: vscode.CancellationToken,
  ): Promise<T> {
    return client.sendRequest(ExecuteCommandRequest.type, params, token) as Promise<T>;
  }

  settingsChanged(event: vscode.ConfigurationChangeEvent): void {
    if (event.affectsConfiguration(`${SECTION}.pythonPath`)) {
      void this.restart();
    } else if (event.affectsConfiguration(SECTION) && this.client?.state === State.Running) {
      // settings: null asks the server to read them again with workspace/configuration,
      // whose answers pass through the middleware above (server keys only).
      void this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: null });
    }
  }

  interpreterChanged(): void {
    const configured = vscode.workspace.getConfiguration(SECTION).get<string>("pythonPath");
    if (!configured?.trim()) {
      void this.restart();
    }
  }

  // -- status ----------------------------------------------------------------------------

  private render(): void {
    const view = this.status.view();
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.level === "normal" ? undefined : new vscode.ThemeColor(`statusBarItem.${view.level}Background`);
  }

  async refreshStatus(): Promise<void> {
    const client = this.client;
    if (client?.state !== State.Running || this.refreshing) {
      return;
    }
    this.refreshing = true;
    try {
      const status = asServerStatus(await this.execute(client, plainParams(SERVER_COMMANDS.status)));
      if (status) {
        this.status.setServerStatus(status);
      }
    } catch (error) {
      this.output.appendLine(`hunkwise: status: ${String(error)}`);
    } finally {
      this.refreshing = false;
    }
    this.render();
    if (this.status.busy) {
      this.startPolling();
    } else {
      this.stopPolling();
    }
  }

  private startPolling(): void {
    if (!this.poll) {
      this.poll = setInterval(() => void this.refreshStatus(), BUSY_POLL_MS);
    }
  }

  private stopPolling(): void {
    if (this.poll) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  private onProgress(token: string, value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
    if (value.kind === "begin") {
      const activity = activityOf(value.title);
      this.progressTokens.set(token, activity);
      this.status.progressBegin(token, value.title, value.message, value.percentage);
      this.sinks.get(activity)?.report(value.message, value.percentage);
    } else if (value.kind === "report") {
      this.status.progressReport(token, value.message, value.percentage);
      const activity = this.progressTokens.get(token);
      if (activity) {
        this.sinks.get(activity)?.report(value.message, value.percentage);
      }
    } else {
      this.status.progressEnd(token);
      this.progressTokens.delete(token);
      void this.refreshStatus();
    }
    this.render();
  }

  /** Asks the server to stop the work of this kind (its progress is cancellable). */
  private cancelWork(activity: Activity): void {
    for (const [token, kind] of this.progressTokens) {
      if (kind === activity) {
        void this.client?.sendNotification(WorkDoneProgressCancelNotification.type, { token });
      }
    }
  }

  /**
   * Runs a long server command under a cancellable notification that shows the server's
   * own progress messages for that kind of work.
   */
  private async withServerProgress<T>(
    activity: Activity,
    title: string,
    run: (token: vscode.CancellationToken) => Promise<T>,
  ): Promise<T | "cancelled"> {
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      async (progress, token) => {
        let last = 0;
        this.sinks.set(activity, {
          report: (message, percentage) => {
            const increment = percentage !== undefined ? Math.max(0, percentage - last) : undefined;
            last = percentage ?? last;
            progress.report({ message, increment });
          },
        });
        const cancelled = new Promise<"cancelled">((resolve) =>
          token.onCancellationRequested(() => {
            this.cancelWork(activity);
            resolve("cancelled");
          }),
        );
        try {
          return await Promise.race([run(token), cancelled]);
        } finally {
          this.sinks.delete(activity);
        }
      },
    );
  }

  // -- commands --------------------------------------------------------------------------

  async editSelection(argument?: unknown): Promise<void> {
    const client = this.running();
    if (!client) {
      return;
    }
    let target = rangeArgument(argument === undefined ? undefined : [argument]);
    if (!target) {
      const editor = vscode.window.activeTextEditor;
      if (!editor) {
        void vscode.window.showWarningMessage("hunkwise: open a file and select the code to edit first.");
        return;
      }
      const selection = editor.selection.isEmpty
        ? editor.document.lineAt(editor.selection.active.line).range
        : editor.selection;
      target = {
        uri: client.code2ProtocolConverter.asUri(editor.document.uri),
        range: client.code2ProtocolConverter.asRange(selection) as LspRange,
      };
    }
    const instruction = await vscode.window.showInputBox({
      title: "Hunkwise: Edit Selection with Instruction",
      prompt: "What should change in the selected code?",
      placeHolder: "e.g. Add type hints",
      ignoreFocusOut: true,
      validateInput: (text) => (text.trim() ? undefined : "Type an instruction, or press Escape"),
    });
    if (!instruction?.trim()) {
      return;
    }
    const { uri, range } = target;
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "hunkwise: editing the selection…", cancellable: true },
      (_progress, token) =>
        this.execute<{ applied?: boolean; reason?: string } | null>(
          client,
          editWithInstructionParams(uri, range, instruction),
          token,
        ),
    );
    if (result && result.applied === false) {
      const reason = result.reason ? `: ${result.reason}` : "";
      void vscode.window.showWarningMessage(`hunkwise: the edit was not applied${reason}`);
    }
  }

  async review(): Promise<void> {
    const client = this.running();
    if (!client) {
      return;
    }
    const result = await this.withServerProgress("reviewing", "hunkwise: reviewing changed files", (token) =>
      this.execute<{ reviewed?: number; flagged?: number; error?: string } | null>(
        client,
        plainParams(SERVER_COMMANDS.reviewWorkspace),
        token,
      ),
    );
    if (result === "cancelled" || !result) {
      return;
    }
    if (!result.error) {
      void vscode.window.showInformationMessage(
        `hunkwise: reviewed ${result.reviewed ?? 0} changed files, ${result.flagged ?? 0} findings (see Problems).`,
      );
    }
  }

  async train(): Promise<void> {
    const client = this.running();
    if (!client) {
      return;
    }
    const base = await vscode.window.showInputBox({
      title: "Hunkwise: Train from Repository",
      prompt:
        'Base model: "tiny" builds a small model from this repository\'s own text (offline, CPU, minutes); ' +
        "or a model id or local path (a GPU is advised).",
      value: "tiny",
      ignoreFocusOut: true,
    });
    if (base === undefined) {
      return;
    }
    const result = await this.withServerProgress("training", "hunkwise: training on this repository", (token) =>
      this.execute<{ trained?: boolean; cancelled?: boolean; reason?: string; bundle?: string } | null>(
        client,
        trainFromRepoParams(base),
        token,
      ),
    );
    await this.refreshStatus();
    if (result === "cancelled" || result?.cancelled) {
      void vscode.window.showInformationMessage("hunkwise: training cancelled; the previous bundle, if any, is unchanged.");
    } else if (result?.trained) {
      void vscode.window.showInformationMessage(`hunkwise: trained and loaded the bundle at ${result.bundle}.`);
    } else if (result?.reason) {
      void vscode.window.showWarningMessage(`hunkwise: training did not run: ${result.reason}`);
    }
  }

  async showStatus(): Promise<void> {
    await this.refreshStatus();
    const interpreter = this.interpreter ? `\ninterpreter: ${this.interpreter.path} (${this.interpreter.source})` : "";
    const details = describeStatus(this.status.serverStatus) + interpreter;
    this.output.appendLine(details);
    const summary = details.split("\n").slice(0, 2).join(" · ");
    const choice = await vscode.window.showInformationMessage(
      summary,
      "Train from Repository",
      "Reload Bundle",
      "Restart Server",
      "Show Output",
    );
    if (choice === "Train from Repository") {
      await this.train();
    } else if (choice === "Reload Bundle") {
      const client = this.running();
      if (client) {
        await this.execute(client, plainParams(SERVER_COMMANDS.reloadBundle));
        await this.refreshStatus();
      }
    } else if (choice === "Restart Server") {
      await this.restart();
    } else if (choice === "Show Output") {
      this.output.show();
    }
  }

  dispose(): void {
    this.stopPolling();
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
  }
}

let hunkwise: Hunkwise | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const extension = new Hunkwise(context);
  hunkwise = extension;
  context.subscriptions.push(
    extension,
    vscode.commands.registerCommand(CLIENT_COMMANDS.editSelection, (argument?: unknown) =>
      extension.editSelection(argument),
    ),
    vscode.commands.registerCommand(CLIENT_COMMANDS.review, () => extension.review()),
    vscode.commands.registerCommand(CLIENT_COMMANDS.train, () => extension.train()),
    vscode.commands.registerCommand(CLIENT_COMMANDS.restartServer, () => extension.restart()),
    vscode.commands.registerCommand(CLIENT_COMMANDS.showStatus, () => extension.showStatus()),
    vscode.workspace.onDidChangeConfiguration((event) => extension.settingsChanged(event)),
  );
  const interpreterWatch = await onInterpreterChange(() => extension.interpreterChanged());
  if (interpreterWatch) {
    context.subscriptions.push(interpreterWatch);
  }
  await extension.start();
}

export async function deactivate(): Promise<void> {
  await hunkwise?.stop();
  hunkwise = undefined;
}
