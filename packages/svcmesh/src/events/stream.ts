// The SVC_EVENTS JetStream stream that captures `svc.events.>`, so a workflow that was
// down misses nothing. Created idempotently by whoever needs it first: the library
// (lazily, before its first event and its first consumer) or `svcmesh events`.
import type { JetStreamManager, NatsConnection, StreamInfo } from "nats";
import { ensureStream, manager as jsManager, type StreamOptions, type StreamSpec } from "../jetstream/stream.js";
import { EVENTS_ROOT } from "../subjects.js";

export { apiCode } from "../jetstream/stream.js";

export const EVENTS_STREAM = "SVC_EVENTS";
export const EVENTS_SUBJECTS = `${EVENTS_ROOT}.>`;

const DAY_MS = 24 * 60 * 60 * 1000;

/** maxAgeMs default 7 days, replicas 1, duplicateWindowMs 2 minutes, maxBytes none. */
export type EventsStreamOptions = StreamOptions;

export const EVENTS_STREAM_DEFAULTS: Required<EventsStreamOptions> = {
  maxAgeMs: 7 * DAY_MS,
  replicas: 1,
  duplicateWindowMs: 2 * 60 * 1000,
  maxBytes: -1,
};

const EVENTS_SPEC: StreamSpec = {
  name: EVENTS_STREAM,
  subjects: EVENTS_SUBJECTS,
  description: "svcmesh mesh events (svc.events.<type>.<service>)",
  what: "mesh events",
  label: "events stream",
  defaults: EVENTS_STREAM_DEFAULTS,
};

/** Creates the events stream if it is missing (see ensureStream for what it changes). */
export function ensureEventsStream(nc: NatsConnection, options: EventsStreamOptions = {}): Promise<StreamInfo> {
  return ensureStream(nc, EVENTS_SPEC, options);
}

/** The JetStream manager, or UNAVAILABLE with a clear reason. */
export function manager(nc: NatsConnection): Promise<JetStreamManager> {
  return jsManager(nc, EVENTS_SPEC);
}
