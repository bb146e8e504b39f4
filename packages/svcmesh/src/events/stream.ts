// The SVC_EVENTS JetStream stream that captures `svc.events.>`, so a workflow that was
// down misses nothing. Created idempotently by whoever needs it first: the library
// (lazily, before its first event and its first consumer) or `svcmesh events`.
import { type JetStreamManager, type NatsConnection, type NatsError, nanos, RetentionPolicy, StorageType, type StreamConfig, type StreamInfo } from "nats";
import { isMeshError, MeshError } from "../errors.js";
import { EVENTS_ROOT } from "../subjects.js";

export const EVENTS_STREAM = "SVC_EVENTS";
export const EVENTS_SUBJECTS = `${EVENTS_ROOT}.>`;

const DAY_MS = 24 * 60 * 60 * 1000;

export interface EventsStreamOptions {
  /** How long events are kept (default 7 days). */
  maxAgeMs?: number;
  /** Copies kept in a JetStream cluster: 1 (default) or 3 (recommended in a cluster). */
  replicas?: number;
  /** Window in which a repeated message id is stored once (default 2 minutes). */
  duplicateWindowMs?: number;
  /** Size cap; the oldest events go first (default: none, max_age only). */
  maxBytes?: number;
}

export const EVENTS_STREAM_DEFAULTS: Required<EventsStreamOptions> = {
  maxAgeMs: 7 * DAY_MS,
  replicas: 1,
  duplicateWindowMs: 2 * 60 * 1000,
  maxBytes: -1,
};

/** JetStream API error codes we tell apart. */
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const REPLICAS_NOT_SUPPORTED = 10074;

/**
 * Creates the events stream if it is missing and returns its info.
 *
 * Options name what the caller wants: on a stream that exists, only the options
 * given here and different from its config are updated; the rest of its config
 * stays as an operator set it. So `ensureEventsStream(nc)` never changes an existing
 * stream, and many processes may call it at once (creating an identical stream twice
 * is not an error; a lost race is resolved by reading the winner's stream).
 *
 * Throws MeshError UNAVAILABLE when the server has no JetStream, BAD_REQUEST for
 * options the server refuses (such as replicas > 1 without a cluster).
 */
export async function ensureEventsStream(nc: NatsConnection, options: EventsStreamOptions = {}): Promise<StreamInfo> {
  checkOptions(options);
  const jsm = await manager(nc);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await streamInfo(jsm);
      if (existing) return await reconcile(jsm, existing, options);
      try {
        return await jsm.streams.add(createConfig(options));
      } catch (e) {
        // Someone created it with another config between our info and add: read theirs.
        if (apiCode(e) !== STREAM_NAME_IN_USE) throw e;
      }
    }
    throw new Error("the stream kept changing while it was being created");
  } catch (e) {
    throw streamError(e);
  }
}

/** The JetStream manager, or UNAVAILABLE with a clear reason. */
export async function manager(nc: NatsConnection): Promise<JetStreamManager> {
  try {
    return await nc.jetstreamManager();
  } catch (e) {
    const code = (e as NatsError)?.code;
    if (code === "503" || /jetstream not enabled/i.test(String((e as Error)?.message))) {
      throw new MeshError("UNAVAILABLE", "JetStream is not enabled on the NATS server (or for this account): mesh events cannot be stored", { cause: e });
    }
    throw new MeshError("UNAVAILABLE", `JetStream is not reachable: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

async function streamInfo(jsm: JetStreamManager): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(EVENTS_STREAM);
  } catch (e) {
    if (apiCode(e) === STREAM_NOT_FOUND) return undefined;
    throw e;
  }
}

function createConfig(options: EventsStreamOptions): Partial<StreamConfig> & { name: string } {
  const o = { ...EVENTS_STREAM_DEFAULTS, ...definedOnly(options) };
  return {
    name: EVENTS_STREAM,
    description: "svcmesh mesh events (svc.events.<type>.<service>)",
    subjects: [EVENTS_SUBJECTS],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(o.maxAgeMs),
    max_bytes: o.maxBytes,
    num_replicas: o.replicas,
    duplicate_window: nanos(Math.min(o.duplicateWindowMs, o.maxAgeMs)),
  };
}

/** Updates the options the caller named that differ; leaves everything else alone. */
async function reconcile(jsm: JetStreamManager, info: StreamInfo, options: EventsStreamOptions): Promise<StreamInfo> {
  const c = info.config;
  const want: Partial<StreamConfig> = {};
  if (options.maxAgeMs !== undefined && c.max_age !== nanos(options.maxAgeMs)) want.max_age = nanos(options.maxAgeMs);
  if (options.replicas !== undefined && c.num_replicas !== options.replicas) want.num_replicas = options.replicas;
  if (options.duplicateWindowMs !== undefined && c.duplicate_window !== nanos(options.duplicateWindowMs)) want.duplicate_window = nanos(options.duplicateWindowMs);
  if (options.maxBytes !== undefined && c.max_bytes !== options.maxBytes) want.max_bytes = options.maxBytes;
  if (!c.subjects?.includes(EVENTS_SUBJECTS)) want.subjects = [...(c.subjects ?? []), EVENTS_SUBJECTS];
  if (Object.keys(want).length === 0) return info;
  return await jsm.streams.update(EVENTS_STREAM, { ...c, ...want });
}

function checkOptions(o: EventsStreamOptions): void {
  const bad = (what: string) => new MeshError("BAD_REQUEST", `events stream: ${what}`);
  if (o.maxAgeMs !== undefined && !(Number.isSafeInteger(o.maxAgeMs) && o.maxAgeMs > 0)) throw bad("maxAgeMs must be a positive whole number");
  if (o.replicas !== undefined && !(Number.isInteger(o.replicas) && o.replicas >= 1 && o.replicas <= 5)) throw bad("replicas must be 1 to 5");
  if (o.duplicateWindowMs !== undefined && !(Number.isSafeInteger(o.duplicateWindowMs) && o.duplicateWindowMs > 0)) throw bad("duplicateWindowMs must be a positive whole number");
  if (o.maxBytes !== undefined && !(Number.isSafeInteger(o.maxBytes) && (o.maxBytes > 0 || o.maxBytes === -1))) throw bad("maxBytes must be positive, or -1 for no cap");
  if (o.maxAgeMs !== undefined && o.duplicateWindowMs !== undefined && o.duplicateWindowMs > o.maxAgeMs) throw bad("duplicateWindowMs may not exceed maxAgeMs");
}

export function apiCode(e: unknown): number | undefined {
  return (e as { api_error?: { err_code?: number } })?.api_error?.err_code;
}

function streamError(e: unknown): MeshError {
  if (isMeshError(e)) return e;
  const message = (e as Error)?.message ?? String(e);
  if (apiCode(e) === REPLICAS_NOT_SUPPORTED) return new MeshError("BAD_REQUEST", `events stream: ${message}`, { cause: e });
  if ((e as NatsError)?.code === "503") return new MeshError("UNAVAILABLE", "JetStream did not answer (no JetStream, or no meta leader yet)", { cause: e });
  return new MeshError("UNAVAILABLE", `cannot create the events stream ${EVENTS_STREAM}: ${message}`, { cause: e });
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
