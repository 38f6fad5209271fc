/**
 * The server's commands (docs/architecture.md section 6) and the arguments the
 * extension sends with them. No `vscode` import, so node can test it.
 */

export const SERVER_COMMANDS = {
  editWithInstruction: "hunkwise.editWithInstruction",
  applyRefinement: "hunkwise.applyRefinement",
  reviewWorkspace: "hunkwise.reviewWorkspace",
  trainFromRepo: "hunkwise.trainFromRepo",
  reloadBundle: "hunkwise.reloadBundle",
  dismiss: "hunkwise.dismiss",
  status: "hunkwise.status",
} as const;

/**
 * The extension's own commands. Their ids differ from the server's: the language
 * client registers the server's commands under their own names.
 */
export const CLIENT_COMMANDS = {
  editSelection: "hunkwise.editSelection",
  review: "hunkwise.review",
  train: "hunkwise.train",
  restartServer: "hunkwise.restartServer",
  showStatus: "hunkwise.showStatus",
} as const;

export interface LspPosition {
  line: number;
  character: number;
}

export interface LspRange {
  start: LspPosition;
  end: LspPosition;
}

export interface ExecuteCommandParams {
  command: string;
  arguments?: unknown[];
}

export function editWithInstructionParams(
  uri: string,
  range: LspRange,
  instruction: string,
): ExecuteCommandParams {
  return {
    command: SERVER_COMMANDS.editWithInstruction,
    arguments: [{ uri, range, instruction: instruction.trim() }],
  };
}

export function trainFromRepoParams(base?: string, tasks?: string[]): ExecuteCommandParams {
  const argument: { base?: string; tasks?: string[] } = {};
  if (base && base.trim()) {
    argument.base = base.trim();
  }
  if (tasks && tasks.length > 0) {
    argument.tasks = tasks;
  }
  return { command: SERVER_COMMANDS.trainFromRepo, arguments: [argument] };
}

export function plainParams(command: string): ExecuteCommandParams {
  return { command, arguments: [] };
}

/** The `{uri, range}` argument of a server command, if it has one. */
export function rangeArgument(args: unknown[] | undefined): { uri: string; range: LspRange } | undefined {
  const first = args?.[0];
  if (first === null || typeof first !== "object") {
    return undefined;
  }
  const { uri, range } = first as { uri?: unknown; range?: unknown };
  if (typeof uri !== "string" || !isRange(range)) {
    return undefined;
  }
  return { uri, range };
}

function isRange(value: unknown): value is LspRange {
  const range = value as LspRange | undefined;
  return (
    range !== undefined &&
    range !== null &&
    typeof range.start?.line === "number" &&
    typeof range.start?.character === "number" &&
    typeof range.end?.line === "number" &&
    typeof range.end?.character === "number"
  );
}

/**
 * The server offers "Edit selection with instruction…" as a code action whose command
 * has no instruction (an LSP server cannot ask for one). In VS Code it runs the
 * extension's command instead, which asks for the instruction first. Other commands
 * are returned unchanged.
 */
export function redirectCodeActionCommand<T extends { command: string; arguments?: unknown[] }>(
  command: T,
): T {
  if (command.command !== SERVER_COMMANDS.editWithInstruction) {
    return command;
  }
  const first = command.arguments?.[0] as { instruction?: unknown } | undefined;
  if (first && typeof first.instruction === "string" && first.instruction.trim()) {
    return command;
  }
  return { ...command, command: CLIENT_COMMANDS.editSelection };
}
