/**
 * The server's settings (section `hunkwise`, docs/architecture.md section 6) as the
 * extension sends them: in `initializationOptions` and in answers to
 * `workspace/configuration`. No `vscode` import, so node can test it.
 */
import * as os from "node:os";
import * as path from "node:path";

export const SECTION = "hunkwise";

/** The keys the server reads, in the contract's order; client-only keys are not sent. */
export const SERVER_SETTING_KEYS = [
  "bundle",
  "device",
  "threshold",
  "diffBase",
  "debounceMs",
  "maxNewTokens",
  "maxInstructionChars",
  "comments",
  "severity",
  "exclude",
  "engine",
  "engineModel",
] as const;

export type ServerSettingKey = (typeof SERVER_SETTING_KEYS)[number];
export type ServerSettings = Partial<Record<ServerSettingKey, unknown>>;

/** Settings only the extension uses (never sent to the server). */
export const CLIENT_SETTING_KEYS = ["pythonPath", "trace.server"] as const;

/** Reads one key of the `hunkwise` section (`WorkspaceConfiguration.get`, or a plain object). */
export type SettingReader = (key: string) => unknown;

/** Values for `${workspaceFolder}` and `~` in path settings. */
export interface PathContext {
  workspaceFolder?: string;
  home?: string;
}

/** `${workspaceFolder}`, `${userHome}` and a leading `~` expanded; other text kept. */
export function expandPath(value: string, context: PathContext = {}): string {
  const home = context.home ?? os.homedir();
  let expanded = value.replace(/\$\{(workspaceFolder|userHome)\}/g, (whole, name: string) => {
    if (name === "userHome") {
      return home;
    }
    return context.workspaceFolder ?? whole;
  });
  if (expanded === "~" || expanded.startsWith("~/") || expanded.startsWith("~\\")) {
    expanded = path.join(home, expanded.slice(1));
  }
  return expanded;
}

/**
 * The server's settings from `read`: every key of section 6 that has a value (unset keys
 * are left out, so the server's own defaults apply), paths expanded. Values are passed
 * as they are: the server validates them and names a bad one in a message.
 */
export function serverSettings(read: SettingReader, context: PathContext = {}): ServerSettings {
  const settings: ServerSettings = {};
  for (const key of SERVER_SETTING_KEYS) {
    let value = read(key);
    if (value === undefined || value === null || value === "") {
      continue;
    }
    if (key === "bundle" && typeof value === "string") {
      value = expandPath(value, context);
    }
    settings[key] = value;
  }
  return settings;
}

/** The `initializationOptions` the extension starts the server with. */
export function buildInitializationOptions(
  read: SettingReader,
  context: PathContext = {},
): ServerSettings {
  return serverSettings(read, context);
}

/** A reader over a plain object such as a `workspace/configuration` answer. */
export function objectReader(source: unknown): SettingReader {
  const record =
    source !== null && typeof source === "object" ? (source as Record<string, unknown>) : {};
  return (key) => record[key];
}

/**
 * An answer to one `workspace/configuration` item, reduced to what the server reads:
 * the whole `hunkwise` section becomes the server's settings; anything else is
 * passed on unchanged.
 */
export function configurationAnswer(
  section: string | undefined,
  answer: unknown,
  context: PathContext = {},
): unknown {
  if (section !== SECTION) {
    return answer;
  }
  return serverSettings(objectReader(answer), context);
}
