// Example services as child processes of the demo: each runs service.js with an IPC
// channel, reports ready over it, keeps the tail of its output for error reports, and
// is stopped with SIGTERM (graceful) and, if that takes too long, SIGKILL.
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TimeoutError, withTimeout } from "./bounded.js";
import type { ServiceName } from "./catalog.js";
import { type ReadyMessage, isReadyMessage } from "./protocol.js";

export const SERVICE_SCRIPT = fileURLToPath(new URL("./service.js", import.meta.url));

const TAIL_LINES = 40;

export interface StopResult {
  label: string;
  /** Exited by itself with code 0 after SIGTERM, in time. */
  clean: boolean;
  detail: string;
}

export class ServiceProcess {
  readonly proc: ChildProcess;
  /** Resolves with the ready message; rejects if the process exits or fails first. */
  readonly ready: Promise<ReadyMessage>;
  /** Resolves when the process has exited, however. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly lines: string[] = [];
  private partial = "";
  private stopRequested = false;
  private onUnexpectedExit: ((e: Error) => void) | undefined;

  constructor(
    readonly label: string,
    readonly service: ServiceName,
    env: NodeJS.ProcessEnv,
  ) {
    this.proc = fork(SERVICE_SCRIPT, [service], {
      env,
      execArgv: [], // not the parent's flags (inspector ports, test runner options)
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    this.proc.stdout!.on("data", (d: Buffer) => this.collect(d));
    this.proc.stderr!.on("data", (d: Buffer) => this.collect(d));
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => {
        resolve({ code, signal });
        if (!this.stopRequested) this.onUnexpectedExit?.(new Error(`${label} exited unexpectedly (${describeExit(code, signal)})`));
      });
    });
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      this.proc.on("message", (m: unknown) => {
        if (isReadyMessage(m)) resolve(m);
      });
      this.proc.once("error", (e) => reject(new Error(`${label}: could not start ${SERVICE_SCRIPT}: ${e.message}`)));
      void this.exited.then(({ code, signal }) => reject(new Error(`${label} exited before it was ready (${describeExit(code, signal)})`)));
    });
    this.ready.catch(() => undefined); // observed by whoever awaits it
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Calls `listener` if the process exits without having been asked to stop. */
  watch(listener: (e: Error) => void): void {
    this.onUnexpectedExit = listener;
  }

  /** The last lines the process wrote (stdout and stderr), for error reports. */
  tail(): string[] {
    return this.partial ? [...this.lines, this.partial] : [...this.lines];
  }

  /** SIGTERM, wait up to `graceMs`; if still running, SIGKILL. */
  async stop(graceMs: number): Promise<StopResult> {
    this.stopRequested = true;
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
      const { code, signal } = await this.exited;
      return { label: this.label, clean: false, detail: `had already exited (${describeExit(code, signal)})` };
    }
    this.proc.kill("SIGTERM");
    try {
      const { code, signal } = await withTimeout(this.exited, graceMs, `${this.label} stopping`);
      return { label: this.label, clean: code === 0, detail: describeExit(code, signal) };
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
      this.proc.kill("SIGKILL");
      await withTimeout(this.exited, 2_000, `${this.label} dying after SIGKILL`).catch(() => undefined);
      return { label: this.label, clean: false, detail: `did not stop within ${graceMs} ms of SIGTERM; killed` };
    }
  }

  private collect(d: Buffer): void {
    const parts = (this.partial + d.toString()).split("\n");
    this.partial = parts.pop() ?? "";
    this.lines.push(...parts);
    if (this.lines.length > TAIL_LINES) this.lines.splice(0, this.lines.length - TAIL_LINES);
    if (this.partial.length > 4_000) this.partial = this.partial.slice(-4_000);
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}
