import { pino, type Logger } from "pino";

/** The default logger: pino to stdout at `level`, else SVCMESH_LOG_LEVEL, else "info". */
export function defaultLogger(name: string, level?: string): Logger {
  return pino({ name, level: level ?? process.env.SVCMESH_LOG_LEVEL ?? "info" });
}

/**
 * Holds back repeats of one failure: each distinct key is let through at most once per
 * `everyMs`, so a retry loop (every 250 ms, say) logs what went wrong without flooding.
 */
const INBOX_TOKEN = /_INBOX[A-Za-z0-9_-]*(\.[A-Za-z0-9_*>-]+)*/g;

export class RepeatedLog {
  private readonly seen = new Map<string, { at: number; held: number }>();

  constructor(private readonly everyMs = 60_000) {}

  /** Whether to log `key` now; then `held` says how many repeats were held back before it. */
  admit(text: string, now = Date.now()): { held: number } | undefined {
    // Error texts name a fresh inbox per request: repeats differ only there.
    const key = text.replace(INBOX_TOKEN, "_INBOX");
    const last = this.seen.get(key);
    if (last !== undefined && now - last.at < this.everyMs) {
      last.held++;
      return undefined;
    }
    if (last === undefined && this.seen.size >= 100) this.seen.clear(); // bounded: keys are error messages
    this.seen.set(key, { at: now, held: 0 });
    return { held: last?.held ?? 0 };
  }
}
