// svcmesh watch: a live tail of the mesh's calls, one line per trace event from
// svc.trace.<service>.<endpoint>. A plain NATS subscription: trace events are not
// stored, so it shows calls from the moment it starts (svcmesh audit reads history).
import type { Command } from "commander";
import type { Msg, NatsConnection } from "nats";
import { decodeTraceBatch, type TraceEvent, traceFilterSubject } from "svcmesh/internal";
import { endpointName, positiveCount, serviceName } from "../args.js";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printable, printLine, toJson } from "../output.js";
import { onStdoutGone } from "../stdout.js";
import { formatMs } from "../time.js";

interface WatchOptions {
  service?: string;
  endpoint?: string;
  errors?: boolean;
  count?: number;
}

export function registerWatch(program: Command): void {
  program
    .command("watch")
    .description("tail calls live, one line per call (trace events); Ctrl-C stops")
    .option("--service <name>", "only calls to this service", serviceName)
    .option("--endpoint <name>", "only calls to this endpoint", endpointName)
    .option("--errors", "only failed calls (status other than ok)")
    .option("--count <n>", "exit after printing n calls", positiveCount)
    .addHelpText("after", `
Subscribes to svc.trace.<service>.<endpoint>, where callers publish one trace event
per call (sampled: every failed call, and a share of the ok ones given by the
caller's trace sampleRate). Nothing is stored: only calls made while it runs show.

One line per call: start time (UTC), caller → service.endpoint, status (ok or the
error code), latency as the caller saw it (retries included), attempts when more
than one, trace id. In colour on a terminal (unless NO_COLOR is set). With --json:
one JSON object per line, the trace event as published: {time, caller, service,
endpoint, version, instance, requestId, traceId, spanId, latencyMs, status,
attempts, rate}.

Examples:
  $ svcmesh watch --service payments
  2026-01-05T10:00:01.002Z  claims → payments.reimburse  ok               1.23ms  4bf92f3577b34da6a3ce929d0e0e4736
  2026-01-05T10:00:01.250Z  claims → payments.reimburse  TIMEOUT           1.50s  attempts=2  0af7651916cd43dd8448eb211c80319c
  $ svcmesh watch --errors --count 10 --json`)
    .action(async (opts: WatchOptions, command: Command) => {
      const globals = globalOptions(command);
      await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => watch(mesh.nc, opts, globals.json));
    });
}

async function watch(nc: NatsConnection, opts: WatchOptions, json: boolean): Promise<void> {
  const colour = useColour();
  let printed = 0;
  let lost: Error | undefined;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const sub = nc.subscribe(traceFilterSubject(opts.service, opts.endpoint), {
    callback: (err: Error | null, msg: Msg) => {
      if (err) {
        lost = err;
        return finish();
      }
      const { events, malformed } = decodeTraceBatch(msg.data);
      if (malformed > 0) {
        process.stderr.write(json
          ? toJson({ skipped: { subject: msg.subject, malformed } }, false) + "\n"
          : `svcmesh: skipping ${malformed} malformed trace record${malformed === 1 ? "" : "s"} on ${printable(msg.subject)}\n`);
      }
      for (const e of events) {
        if (printed === opts.count) break;
        if (opts.errors && e.status === "ok") continue;
        printed++;
        printLine(json ? toJson(e, false) : formatTrace(e, colour));
      }
      if (printed === opts.count) finish();
    },
  });
  const stop = (): void => finish();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const offGone = onStdoutGone(stop);
  void nc.closed().then((err) => {
    lost ??= err ?? new Error("connection closed");
    finish();
  });
  try {
    await nc.flush(); // subscribed at the server before anything is reported as watched
    await done;
  } finally {
    process.removeListener("SIGINT", stop);
    process.removeListener("SIGTERM", stop);
    offGone();
    sub.unsubscribe();
  }
  if (lost && printed !== opts.count) throw new CliError(`lost the connection to NATS: ${lost.message}`, "UNAVAILABLE");
}

/** Colour only for a person at a terminal: stdout is a TTY and NO_COLOR is unset (or empty). */
export function useColour(): boolean {
  return process.stdout.isTTY === true && !process.env.NO_COLOR;
}

const GREEN = "\x1b[32m";
const RED = "\x1b[31m";
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

/** As wide as the usual error codes (HANDLER_ERROR, NO_RESPONDERS); UNAUTHENTICATED overflows by two. */
const STATUS_WIDTH = 13;

/** `time  caller → service.endpoint  status  latency  [attempts=n]  traceId`. */
export function formatTrace(e: TraceEvent, colour: boolean): string {
  const paint = (code: string, text: string): string => (colour ? code + text + RESET : text);
  const status = printable(e.status).padEnd(STATUS_WIDTH);
  const fields = [
    new Date(e.time).toISOString(),
    printable(`${e.caller} → ${e.service}.${e.endpoint}`),
    paint(e.status === "ok" ? GREEN : RED, status),
    formatMs(e.latencyMs).padStart(8),
    ...(e.attempts > 1 ? [`attempts=${e.attempts}`] : []),
    paint(DIM, printable(e.traceId)),
  ];
  return fields.join("  ");
}
