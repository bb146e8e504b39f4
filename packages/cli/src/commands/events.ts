// svcmesh events: mesh events from the SVC_EVENTS stream, one line each; --follow
// keeps tailing them until interrupted. Reads through an ephemeral ordered consumer,
// so it never moves a workflow's durable position.
import { type Command, InvalidArgumentError } from "commander";
import type { ConsumerMessages, JsMsg, NatsConnection } from "nats";
import { COALESCED_TYPES, decodeEvent, EVENT_TYPES, eventMatches, EVENTS_STREAM, eventsFilterSubject, ensureEventsStream } from "svcmesh/internal";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printable, printLine, toJson } from "../output.js";
import { onStdoutGone, stdoutGone } from "../stdout.js";
import { parseSince } from "../time.js";

interface EventsOptions {
  follow?: boolean;
  type?: string[];
  service?: string[];
  /** ms since the epoch */
  since?: number;
}

export function registerEvents(program: Command): void {
  program
    .command("events")
    .description("list mesh events (breakers, timeouts, rate limits, instances...); --follow tails them")
    .option("-f, --follow", "keep printing new events until interrupted (Ctrl-C)")
    .option("--type <types>", "only these event types, comma-separated", parseTypes)
    .option("--service <names>", "only events about these services, comma-separated", parseServices)
    .option("--since <when>", "start at a time: a duration ago (30s, 15m, 1h, 2d) or an ISO date", parseSince)
    .addHelpText("after", `
Events come from the JetStream stream ${EVENTS_STREAM} (subjects svc.events.<type>.<service>),
which this command creates when it is missing (file storage, kept 7 days). Without
--since, every stored event is listed. Per-call events (${COALESCED_TYPES.join(", ")}) are
coalesced: one line stands for "count" calls of one caller to one target endpoint
within a window.

Event types: ${EVENT_TYPES.join(", ")}

One line per event: time (UTC), type, service, key fields. With --json: one JSON
object per line, the event as published (see the schemas in svcmesh's events).

Examples:
  $ svcmesh events --since 1h
  2026-01-05T10:00:01.002Z  circuit_open       payments      caller=claims target=payments.v2
  2026-01-05T10:00:02.000Z  timeout            payments      caller=claims target=payments.v2 endpoint=reimburse count=4812
  $ svcmesh events --follow --type circuit_open,circuit_close --service payments`)
    .action(async (opts: EventsOptions, command: Command) => {
      const globals = globalOptions(command);
      await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => listEvents(mesh.nc, opts, globals.json));
    });
}

async function listEvents(nc: NatsConnection, opts: EventsOptions, json: boolean): Promise<void> {
  const stream = await ensureEventsStream(nc);
  const lastSeq = stream.state.last_seq;
  const consumer = await nc.jetstream().consumers.get(EVENTS_STREAM, {
    filterSubjects: eventsFilterSubject(opts.type, opts.service),
    // An ordered consumer starts at the first message unless given a start time.
    ...(opts.since === undefined ? {} : { opt_start_time: new Date(opts.since).toISOString() }),
  });
  const types = new Set(opts.type ?? []);
  const services = new Set(opts.service ?? []);
  let printed = 0;
  const show = (m: JsMsg): void => {
    const d = decodeEvent(m.subject, m.data, m.info.timestampNanos / 1e6);
    if (d.kind === "malformed") {
      const skipped = { seq: m.seq, subject: m.subject, reason: d.reason };
      process.stderr.write(json ? toJson({ skipped }, false) + "\n" : printable(`svcmesh: skipping malformed event #${m.seq} on ${m.subject}: ${d.reason}`) + "\n");
      return;
    }
    if (!eventMatches(d.event.type, d.event.service, types, services)) return;
    printed++;
    printLine(json ? toJson(d.event, false) : formatEvent(d.event));
  };

  if (!opts.follow) {
    if ((await consumer.info()).num_pending === 0) {
      if (!json) printLine("no events");
      return;
    }
    const messages = await consumer.consume({ max_messages: 256 });
    for await (const m of messages) {
      // Listed up to what was stored when the command started.
      if (m.seq > lastSeq) break;
      show(m);
      if (m.info.pending === 0 || m.seq === lastSeq || stdoutGone()) break;
    }
    await messages.close();
    if (printed === 0 && !json) printLine("no events");
    return;
  }

  const messages: ConsumerMessages = await consumer.consume({ max_messages: 256 });
  let lost: Error | undefined;
  const stop = () => messages.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const offGone = onStdoutGone(stop);
  void nc.closed().then((err) => {
    lost = err ?? new Error("connection closed");
    messages.stop();
  });
  try {
    for await (const m of messages) show(m);
  } finally {
    process.removeListener("SIGINT", stop);
    process.removeListener("SIGTERM", stop);
    offGone();
  }
  if (lost) throw new CliError(`lost the connection to NATS: ${lost.message}`, "UNAVAILABLE");
}

const KEY_FIELDS = ["caller", "target", "endpoint", "id", "version", "endpoints", "attempts", "lastCode", "count"];
const ENVELOPE = new Set(["type", "service", "at", "source"]);

/** `time  type  service  key=value...`: the key fields in a fixed order; unknown types show all their plain fields. */
export function formatEvent(event: Record<string, unknown> & { type: string; service: string; at: number }): string {
  const keys = Object.hasOwn(event, "caller") || Object.hasOwn(event, "id")
    ? KEY_FIELDS.filter((k) => event[k] !== undefined)
    : Object.keys(event).filter((k) => !ENVELOPE.has(k));
  const fields = keys
    .filter((k) => ["string", "number", "boolean"].includes(typeof event[k]) || Array.isArray(event[k]))
    .map((k) => `${k}=${Array.isArray(event[k]) ? (event[k] as unknown[]).join(",") : String(event[k])}`);
  return printable([new Date(event.at).toISOString(), event.type.padEnd(17), event.service.padEnd(12), fields.join(" ")].join("  ").trimEnd());
}

function list(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function parseTypes(value: string, previous: string[] = []): string[] {
  const types = list(value);
  const unknown = types.find((t) => !(EVENT_TYPES as string[]).includes(t));
  if (unknown !== undefined) throw new InvalidArgumentError(`unknown event type "${unknown}" (known: ${EVENT_TYPES.join(", ")}).`);
  if (types.length === 0) throw new InvalidArgumentError("expected event types, comma-separated.");
  return [...previous, ...types];
}

function parseServices(value: string, previous: string[] = []): string[] {
  const names = list(value);
  const bad = names.find((n) => !/^[A-Za-z0-9_-]+$/.test(n));
  if (bad !== undefined) throw new InvalidArgumentError(`"${bad}" is not a service name.`);
  if (names.length === 0) throw new InvalidArgumentError("expected service names, comma-separated.");
  return [...previous, ...names];
}
