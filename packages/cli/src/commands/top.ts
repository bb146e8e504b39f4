// svcmesh top: a live table of the mesh's traffic per service and endpoint, computed
// from the trace events callers publish (svc.trace.>) over a sliding window: calls
// per second, p50 and p99 latency, error rate, and each service's breaker state from
// the circuit events (svc.events.circuit_*). Like `top`, it redraws in place on a
// terminal; piped, it prints one snapshot after another.
import { type Command, InvalidArgumentError } from "commander";
import type { JetStreamManager, Msg, NatsConnection, Subscription } from "nats";
import { decodeEvent, decodeTraceBatch, EVENTS_ROOT, EVENTS_STREAM, type TraceEvent, traceFilterSubject } from "svcmesh/internal";
import { positiveCount, serviceName } from "../args.js";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError } from "../errors.js";
import { globalOptions, positiveInteger } from "../options.js";
import { formatTable, printLine, toJson } from "../output.js";
import { onStdoutGone } from "../stdout.js";
import { formatMs } from "../time.js";

interface TopOptions {
  service?: string;
  interval: number;
  window: number;
  count?: number;
}

export const DEFAULT_INTERVAL_MS = 1_000;
export const DEFAULT_WINDOW_MS = 10_000;
/** The shortest refresh interval: a table redrawn faster than this is unreadable anyway. */
const MIN_INTERVAL_MS = 100;

export type BreakerState = "closed" | "open" | "half-open";

export interface TopRow {
  service: string;
  endpoint: string;
  /** Calls per second over the window (ok records weighted by 1/rate). */
  rps: number;
  /** Latency quantiles over the window's records, weighted like rps; null without calls. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Failed calls / calls over the window (0 without calls). */
  errorRate: number;
  breaker: BreakerState;
  /** Calls over the window (estimated from the sampled records). */
  calls: number;
}

export interface TopSnapshot {
  at: number;
  /** The span the rates are computed over: the window, or the time since start if shorter. */
  windowMs: number;
  rows: TopRow[];
}

export function registerTop(program: Command): void {
  program
    .command("top")
    .description("live table per service and endpoint: calls/s, p50/p99 latency, error rate, breaker state")
    .option("--service <name>", "only this service", serviceName)
    .option("--interval <ms>", "refresh every this many milliseconds", interval, DEFAULT_INTERVAL_MS)
    .option("--window <ms>", "compute over the last this many milliseconds", positiveInteger, DEFAULT_WINDOW_MS)
    .option("--count <n>", "exit after n refreshes", positiveCount)
    .addHelpText("after", `
Computed from the trace events callers publish on svc.trace.<service>.<endpoint>
over a sliding window (default the last 10 s, or the time since start if shorter).
A sampled ok record stands for 1/rate calls, every failed call has its own record;
p50/p99 are the latencies callers saw (retries included), weighted the same way.
ERRORS is failed calls / calls. BREAKER is the state of the callers' breakers to the
service, from svc.events.circuit_open|half_open|close.<service>: open if any caller's
breaker is open, else half-open if any is probing, else closed (also when none was
ever heard of). A service's last stored transitions (stream SVC_EVENTS, if it exists)
give the state at start; live events follow. Calls are counted from the start only.

On a terminal the table is redrawn in place; otherwise each snapshot is printed,
separated by a blank line. Ctrl-C stops. With --json: one snapshot per line:
{at, windowMs, rows: [{service, endpoint, rps, p50Ms, p99Ms, errorRate, breaker, calls}]}.

Examples:
  $ svcmesh top
  svcmesh top  2026-01-05T10:00:10.000Z  window 10s
  SERVICE   ENDPOINT   REQ/S   P50     P99      ERRORS  BREAKER  CALLS
  payments  reimburse  412.3   1.21ms  4.80ms   0.2%    closed   4123
  auth      verify     820.0   0.35ms  1.02ms   0.0%    closed   8200
  $ svcmesh top --service payments --interval 5000 --count 3 --json`)
    .action(async (opts: TopOptions, command: Command) => {
      const globals = globalOptions(command);
      await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => top(mesh.nc, opts, globals.json));
    });
}

function interval(value: string): number {
  const n = positiveInteger(value);
  if (n < MIN_INTERVAL_MS) throw new InvalidArgumentError(`expected at least ${MIN_INTERVAL_MS} milliseconds.`);
  return n;
}

async function top(nc: NatsConnection, opts: TopOptions, json: boolean): Promise<void> {
  const stats = new TopStats(opts.window);
  const tty = process.stdout.isTTY === true && !json;
  let lost: Error | undefined;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const onError = (err: Error | null): boolean => {
    if (!err) return false;
    lost = err;
    finish();
    return true;
  };
  // Breakers that changed state before top started: their last stored transitions.
  const recalled = new Set<string>();
  let jsm: Promise<JetStreamManager | undefined> | undefined;
  const recall = (service: string): void => {
    if (recalled.has(service)) return;
    recalled.add(service);
    jsm ??= nc.jetstreamManager().catch(() => undefined);
    void jsm.then((m) => m && recallBreakers(m, stats, service)).catch(() => undefined);
  };
  if (opts.service) recall(opts.service);
  const subs: Subscription[] = [
    nc.subscribe(traceFilterSubject(opts.service), {
      callback: (err: Error | null, msg: Msg) => {
        if (onError(err)) return;
        const { events, malformed } = decodeTraceBatch(msg.data);
        for (const e of events) {
          stats.addTrace(e, Date.now());
          recall(e.service);
        }
        stats.malformed += malformed;
      },
    }),
    ...CIRCUIT_TYPES.map((type) =>
      nc.subscribe(`${EVENTS_ROOT}.${type}.${opts.service ?? "*"}`, {
        callback: (err: Error | null, msg: Msg) => {
          if (onError(err)) return;
          addCircuitEvent(stats, msg.subject, msg.data, Date.now());
        },
      })),
  ];
  let refreshes = 0;
  const refresh = (): void => {
    const snapshot = stats.snapshot(Date.now());
    if (json) printLine(toJson(snapshot, false));
    else if (tty) process.stdout.write(CLEAR + formatSnapshot(snapshot) + "\n");
    else printLine((refreshes > 0 ? "\n" : "") + formatSnapshot(snapshot));
    refreshes++;
    if (refreshes === opts.count) finish();
  };
  const stop = (): void => finish();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const offGone = onStdoutGone(stop);
  void nc.closed().then((err) => {
    lost ??= err ?? new Error("connection closed");
    finish();
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await nc.flush();
    stats.start(Date.now());
    timer = setInterval(refresh, opts.interval);
    await done;
  } finally {
    clearInterval(timer);
    process.removeListener("SIGINT", stop);
    process.removeListener("SIGTERM", stop);
    offGone();
    for (const s of subs) s.unsubscribe();
  }
  if (stats.malformed > 0) process.stderr.write(`svcmesh: skipped ${stats.malformed} malformed trace record${stats.malformed === 1 ? "" : "s"}\n`);
  if (lost && refreshes !== opts.count) throw new CliError(`lost the connection to NATS: ${lost.message}`, "UNAVAILABLE");
}

const CIRCUIT_TYPES = ["circuit_open", "circuit_half_open", "circuit_close"] as const;

function addCircuitEvent(stats: TopStats, subject: string, data: Uint8Array, storedAtMs: number): void {
  const d = decodeEvent(subject, data, storedAtMs);
  if (d.kind !== "event") return;
  const e = d.event as { type: string; service: string; at: number; caller?: string; target?: string };
  stats.addCircuit(e.type, e.service, `${e.caller ?? ""}>${e.target ?? e.service}`, e.at);
}

/**
 * The latest stored circuit_open / half_open / close of a service (from SVC_EVENTS,
 * when it exists): what the breakers were when top started. Per event type only the
 * last one is kept by subject, so where several callers' breakers changed state, the
 * latest transition stands for them all until live events say more.
 */
async function recallBreakers(jsm: JetStreamManager, stats: TopStats, service: string): Promise<void> {
  await Promise.all(CIRCUIT_TYPES.map(async (type) => {
    const m = await jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: `${EVENTS_ROOT}.${type}.${service}` }).catch(() => undefined);
    if (m) addCircuitEvent(stats, m.subject, m.data, m.time.getTime());
  }));
}

/** Cursor home, clear screen. */
const CLEAR = "\x1b[H\x1b[2J";

interface Sample {
  /** When it arrived here (local clock, so callers' clock skew does not matter). */
  at: number;
  latencyMs: number;
  /** Calls it stands for. */
  weight: number;
  failed: boolean;
}

/** The window's samples per service and endpoint, and the breakers heard of. */
export class TopStats {
  private readonly rows = new Map<string, { service: string; endpoint: string; samples: Sample[] }>();
  /** Per service, per breaker (caller > target): its latest state and when it was entered. */
  private readonly breakers = new Map<string, Map<string, { state: BreakerState; at: number }>>();
  private startedAt = Date.now();
  malformed = 0;

  constructor(private readonly windowMs: number) {}

  start(now: number): void {
    this.startedAt = now;
  }

  addTrace(e: TraceEvent, now: number): void {
    const key = `${e.service}.${e.endpoint}`;
    let row = this.rows.get(key);
    if (!row) this.rows.set(key, (row = { service: e.service, endpoint: e.endpoint, samples: [] }));
    const failed = e.status !== "ok";
    // rate is the sampling rate of ok calls; errors are always kept, so each is one call.
    const weight = failed || !(e.rate > 0) ? 1 : 1 / e.rate;
    row.samples.push({ at: now, latencyMs: e.latencyMs, weight, failed });
  }

  addCircuit(type: string, service: string, breaker: string, at: number): void {
    const state: BreakerState | undefined = type === "circuit_open" ? "open" : type === "circuit_half_open" ? "half-open" : type === "circuit_close" ? "closed" : undefined;
    if (!state) return;
    let byBreaker = this.breakers.get(service);
    if (!byBreaker) this.breakers.set(service, (byBreaker = new Map()));
    const known = byBreaker.get(breaker);
    if (known && known.at > at) return; // an older transition arriving late
    byBreaker.set(breaker, { state, at });
  }

  breaker(service: string): BreakerState {
    const states = [...(this.breakers.get(service)?.values() ?? [])].map((b) => b.state);
    return states.includes("open") ? "open" : states.includes("half-open") ? "half-open" : "closed";
  }

  /** Drops what left the window and summarizes the rest; rows stay once seen (0 calls when quiet). */
  snapshot(now: number): TopSnapshot {
    const from = now - this.windowMs;
    const spanMs = Math.max(1, Math.min(this.windowMs, now - this.startedAt));
    const rows: TopRow[] = [];
    for (const row of this.rows.values()) {
      const firstKept = row.samples.findIndex((s) => s.at > from);
      if (firstKept !== 0) row.samples.splice(0, firstKept < 0 ? row.samples.length : firstKept);
      let calls = 0;
      let failed = 0;
      for (const s of row.samples) {
        calls += s.weight;
        if (s.failed) failed += s.weight;
      }
      const sorted = [...row.samples].sort((a, b) => a.latencyMs - b.latencyMs);
      rows.push({
        service: row.service,
        endpoint: row.endpoint,
        rps: round(calls / (spanMs / 1000), 2),
        p50Ms: quantile(sorted, calls, 0.5),
        p99Ms: quantile(sorted, calls, 0.99),
        errorRate: calls > 0 ? round(failed / calls, 4) : 0,
        breaker: this.breaker(row.service),
        calls: round(calls, 2),
      });
    }
    rows.sort((a, b) => a.service.localeCompare(b.service) || a.endpoint.localeCompare(b.endpoint));
    return { at: now, windowMs: spanMs, rows };
  }
}

/** Weighted nearest-rank quantile of samples sorted by latency. */
function quantile(sorted: readonly Sample[], total: number, q: number): number | null {
  if (sorted.length === 0 || total <= 0) return null;
  const rank = q * total;
  let seen = 0;
  for (const s of sorted) {
    seen += s.weight;
    if (seen >= rank) return round(s.latencyMs, 3);
  }
  return round(sorted[sorted.length - 1]!.latencyMs, 3);
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function formatSnapshot(s: TopSnapshot): string {
  const title = `svcmesh top  ${new Date(s.at).toISOString()}  window ${formatWindow(s.windowMs)}`;
  if (s.rows.length === 0) return `${title}\nno calls seen yet`;
  return title + "\n" + formatTable(
    ["SERVICE", "ENDPOINT", "REQ/S", "P50", "P99", "ERRORS", "BREAKER", "CALLS"],
    s.rows.map((r) => [
      r.service,
      r.endpoint,
      r.rps.toFixed(1),
      r.p50Ms === null ? "-" : formatMs(r.p50Ms),
      r.p99Ms === null ? "-" : formatMs(r.p99Ms),
      `${(r.errorRate * 100).toFixed(1)}%`,
      r.breaker,
      String(Math.round(r.calls)),
    ]),
  );
}

function formatWindow(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}
