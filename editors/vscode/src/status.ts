/**
 * The status-bar item's state: what `hunkwise.status` last said, plus the work going
 * on now (the server's work-done progress and diagnostic pulls in flight). No `vscode`
 * import, so node can test it.
 */

/** `hunkwise.status`'s answer (the fields the extension shows). */
export interface ServerStatus {
  state: string;
  bundle?: string;
  base?: string;
  adapters?: string[];
  device?: string | null;
  queue?: number;
  training?: boolean;
  message?: string | null;
  version?: string;
}

export type Activity = "loading" | "training" | "reviewing";

export interface StatusView {
  text: string;
  tooltip: string;
  /** Drives the item's colour: warning and error get the theme's background. */
  level: "normal" | "warning" | "error";
}

interface Work {
  activity: Activity;
  title: string;
  message?: string;
  percentage?: number;
}

/** Which kind of work a progress title describes. */
export function activityOf(title: string): Activity {
  const lower = title.toLowerCase();
  if (lower.includes("train")) {
    return "training";
  }
  if (lower.includes("load")) {
    return "loading";
  }
  return "reviewing";
}

export class StatusModel {
  private server: ServerStatus | undefined;
  private connection: "starting" | "running" | "stopped" = "starting";
  private readonly work = new Map<string, Work>();
  private pulls = 0;

  starting(): void {
    this.connection = "starting";
    this.server = undefined;
    this.work.clear();
    this.pulls = 0;
  }

  running(): void {
    this.connection = "running";
  }

  stopped(): void {
    this.connection = "stopped";
    this.work.clear();
    this.pulls = 0;
  }

  setServerStatus(status: ServerStatus): void {
    this.server = status;
  }

  get serverStatus(): ServerStatus | undefined {
    return this.server;
  }

  progressBegin(token: string, title: string, message?: string, percentage?: number): void {
    this.work.set(token, { activity: activityOf(title), title, message, percentage });
  }

  progressReport(token: string, message?: string, percentage?: number): void {
    const work = this.work.get(token);
    if (work) {
      work.message = message ?? work.message;
      work.percentage = percentage ?? work.percentage;
    }
  }

  progressEnd(token: string): void {
    this.work.delete(token);
  }

  pullStarted(): void {
    this.pulls += 1;
  }

  pullEnded(): void {
    this.pulls = Math.max(0, this.pulls - 1);
  }

  /** True while something may change soon (the extension then polls `hunkwise.status`). */
  get busy(): boolean {
    return (
      this.connection === "starting" ||
      (this.connection === "running" && !this.server) ||
      this.work.size > 0 ||
      this.server?.state === "loading" ||
      this.server?.training === true
    );
  }

  activity(): Activity | undefined {
    const kinds = new Set([...this.work.values()].map((work) => work.activity));
    if (kinds.has("training") || this.server?.training) {
      return "training";
    }
    if (kinds.has("loading") || this.server?.state === "loading") {
      return "loading";
    }
    if (kinds.has("reviewing") || this.pulls > 0 || (this.server?.queue ?? 0) > 0) {
      return "reviewing";
    }
    return undefined;
  }

  view(): StatusView {
    const details = describeStatus(this.server);
    if (this.connection === "stopped") {
      return {
        text: "$(debug-disconnect) hunkwise: stopped",
        tooltip: "The hunkwise server is not running. Click for status; Hunkwise: Restart Server starts it.",
        level: "error",
      };
    }
    if (!this.server) {
      // Running but no hunkwise.status answer yet: still starting (and polled until one comes).
      return { text: "$(loading~spin) hunkwise: starting", tooltip: "Starting the hunkwise server", level: "normal" };
    }
    const activity = this.activity();
    if (activity) {
      const work = [...this.work.values()].find((item) => item.activity === activity);
      const percent = work?.percentage !== undefined ? ` ${work.percentage}%` : "";
      const tooltip = [work?.title, work?.message, details].filter(Boolean).join("\n");
      return { text: `$(loading~spin) hunkwise: ${activity}${percent}`, tooltip, level: "normal" };
    }
    switch (this.server?.state) {
      case "ready":
        return { text: "$(check) hunkwise", tooltip: details, level: "normal" };
      case "no-bundle":
        return {
          text: "$(circle-slash) hunkwise: no bundle",
          tooltip: `${details}\nRun "Hunkwise: Train from Repository" or set hunkwise.bundle.`,
          level: "warning",
        };
      case "error":
        return { text: "$(error) hunkwise: error", tooltip: details, level: "error" };
      default:
        return { text: `$(question) hunkwise: ${this.server?.state ?? "unknown"}`, tooltip: details, level: "normal" };
    }
  }
}

/** A few lines for a tooltip or the status message. */
export function describeStatus(status: ServerStatus | undefined): string {
  if (!status) {
    return "hunkwise: no status yet";
  }
  const lines = [`hunkwise ${status.version ?? ""}: ${status.state}`.replace(" :", ":")];
  if (status.bundle) {
    lines.push(`bundle: ${status.bundle}`);
  }
  if (status.adapters && status.adapters.length > 0) {
    const device = status.device ? ` on ${status.device}` : "";
    lines.push(`adapters: ${status.adapters.join(", ")}${device}`);
  }
  if (status.base) {
    lines.push(`diff base: ${status.base}`);
  }
  if (status.training) {
    lines.push("training: running");
  }
  if (status.message) {
    lines.push(status.message);
  }
  return lines.join("\n");
}

/** `hunkwise.status`'s answer checked for the one field the extension needs. */
export function asServerStatus(value: unknown): ServerStatus | undefined {
  if (value !== null && typeof value === "object" && typeof (value as ServerStatus).state === "string") {
    return value as ServerStatus;
  }
  return undefined;
}
