/**
 * Which Python runs the server, and the command line that starts it. No `vscode`
 * import, so node can test it (and the wiring test starts the server with it).
 */
import { expandPath, type PathContext } from "./settings";

export type InterpreterSource = "setting" | "python-extension" | "default";

export interface Interpreter {
  path: string;
  source: InterpreterSource;
}

export interface InterpreterInputs {
  /** `hunkwise.pythonPath` as the user set it (may be empty). */
  configured?: string;
  /** The Python extension's selected interpreter for the workspace, when it has one. */
  fromPythonExtension?: string;
  platform?: NodeJS.Platform;
  context?: PathContext;
}

/** `hunkwise.pythonPath` first, then the Python extension's choice, then `python3`. */
export function resolveInterpreter(inputs: InterpreterInputs): Interpreter {
  const configured = inputs.configured?.trim();
  if (configured) {
    return { path: expandPath(configured, inputs.context), source: "setting" };
  }
  const selected = inputs.fromPythonExtension?.trim();
  if (selected) {
    return { path: selected, source: "python-extension" };
  }
  const platform = inputs.platform ?? process.platform;
  return { path: platform === "win32" ? "python" : "python3", source: "default" };
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/** `python -m server` (docs/architecture.md section 5), talking LSP over stdio. */
export function serverCommand(python: string): ServerCommand {
  return { command: python, args: ["-m", "server"] };
}

/** What to tell the user when the interpreter cannot start the server. */
export function startFailureMessage(interpreter: Interpreter, detail: string): string {
  const where =
    interpreter.source === "setting"
      ? "the `hunkwise.pythonPath` setting"
      : interpreter.source === "python-extension"
        ? "the Python extension's selected interpreter"
        : "the default interpreter";
  return (
    `hunkwise: the language server did not start with ${interpreter.path} (${where}): ${detail}. ` +
    `Install hunkwise into that interpreter (pip install hunkwise) or set hunkwise.pythonPath.`
  );
}
