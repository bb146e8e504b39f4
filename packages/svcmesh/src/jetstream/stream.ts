// The mesh's JetStream streams (events, audit) are created the same way: idempotently,
// by whoever needs one first, never changing an operator's settings unasked. One
// StreamSpec per stream names it, its subjects and its defaults.
import { type JetStreamManager, type NatsConnection, type NatsError, nanos, RetentionPolicy, StorageType, type StreamConfig, type StreamInfo } from "nats";
import { isMeshError, MeshError } from "../errors.js";

export interface StreamOptions {
  /** How long messages are kept. */
  maxAgeMs?: number;
  /** Copies kept in a JetStream cluster: 1 or 3 (recommended in a cluster). */
  replicas?: number;
  /** Window in which a repeated message id is stored once. */
  duplicateWindowMs?: number;
  /** Size cap; the oldest messages go first (-1: none, max_age only). */
  maxBytes?: number;
}

export interface StreamSpec {
  name: string;
  subjects: string;
  description: string;
  /** What the stream holds, for error messages ("mesh events", "audit records"). */
  what: string;
  /** Prefix of option errors ("events stream"). */
  label: string;
  defaults: Required<StreamOptions>;
}

/** JetStream API error codes we tell apart. */
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const REPLICAS_NOT_SUPPORTED = 10074;

/**
 * Creates the stream if it is missing and returns its info.
 *
 * Options name what the caller wants: on a stream that exists, only the options
 * given here and different from its config are updated; the rest of its config
 * stays as an operator set it. So `ensureStream(nc, spec)` never changes an existing
 * stream, and many processes may call it at once (creating an identical stream twice
 * is not an error; a lost race is resolved by reading the winner's stream).
 *
 * Throws MeshError UNAVAILABLE when the server has no JetStream, BAD_REQUEST for
 * options the server refuses (such as replicas > 1 without a cluster).
 */
export async function ensureStream(nc: NatsConnection, spec: StreamSpec, options: StreamOptions = {}): Promise<StreamInfo> {
  checkStreamOptions(spec, options);
  const jsm = await manager(nc, spec);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await streamInfo(jsm, spec.name);
      if (existing) return await reconcile(jsm, spec, existing, options);
      try {
        return await jsm.streams.add(createConfig(spec, options));
      } catch (e) {
        // Someone created it with another config between our info and add: read theirs.
        if (apiCode(e) !== STREAM_NAME_IN_USE) throw e;
      }
    }
    throw new Error("the stream kept changing while it was being created");
  } catch (e) {
    throw streamError(spec, e);
  }
}

/**
 * Whether a failure to reach a stream is for good, not for a while (an outage, an
 * election): JetStream is not enabled (`manager`), or the stream is gone (`lookAgain`).
 */
export function storageGone(e: unknown): "no_jetstream" | "no_stream" | undefined {
  return isMeshError(e) ? gone.get(e) : undefined;
}

/** The errors storageGone() recognizes, kept apart from what users see of them. */
const gone = new WeakMap<MeshError, "no_jetstream" | "no_stream">();

function markedGone(e: MeshError, why: "no_jetstream" | "no_stream"): MeshError {
  gone.set(e, why);
  return e;
}

/** The JetStream manager, or UNAVAILABLE with a clear reason. */
export async function manager(nc: NatsConnection, spec?: Pick<StreamSpec, "what">): Promise<JetStreamManager> {
  try {
    return await nc.jetstreamManager();
  } catch (e) {
    const code = (e as NatsError)?.code;
    if (code === "503" || /jetstream not enabled/i.test(String((e as Error)?.message))) {
      throw markedGone(new MeshError("UNAVAILABLE", `JetStream is not enabled on the NATS server (or for this account): ${spec?.what ?? "mesh data"} cannot be stored`, { cause: e }), "no_jetstream");
    }
    throw new MeshError("UNAVAILABLE", `JetStream is not reachable: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

/**
 * A second look at a stream this process prepared before (its acks went missing): its
 * info, or `create()`'s when it is gone and may be made again. An existing stream's
 * config is not reconciled again (that happens once, when first prepared). Throws when
 * the stream is not there, or JetStream is not.
 */
export async function lookAgain(nc: NatsConnection, name: string, what: string, create: (() => Promise<StreamInfo>) | undefined): Promise<StreamInfo> {
  const info = await streamInfo(await manager(nc, { what }), name);
  if (info) return info;
  if (create) return create();
  throw markedGone(new MeshError("UNAVAILABLE", `the ${name} stream is not there: ${what} cannot be stored`), "no_stream");
}

/** A stream's info, or undefined when it does not exist. */
export async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (e) {
    if (apiCode(e) === STREAM_NOT_FOUND) return undefined;
    throw e;
  }
}

/** The duplicate window a stream made from `spec` and `options` gets, in ms (never longer than the stream keeps messages). */
export function createdDuplicateWindowMs(spec: StreamSpec, options: StreamOptions): number {
  const o = { ...spec.defaults, ...definedOnly(options) };
  return Math.min(o.duplicateWindowMs, o.maxAgeMs);
}

function createConfig(spec: StreamSpec, options: StreamOptions): Partial<StreamConfig> & { name: string } {
  const o = { ...spec.defaults, ...definedOnly(options) };
  return {
    name: spec.name,
    description: spec.description,
    subjects: [spec.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(o.maxAgeMs),
    max_bytes: o.maxBytes,
    num_replicas: o.replicas,
    duplicate_window: nanos(createdDuplicateWindowMs(spec, options)),
  };
}

/** Updates the options the caller named that differ; leaves everything else alone. */
async function reconcile(jsm: JetStreamManager, spec: StreamSpec, info: StreamInfo, options: StreamOptions): Promise<StreamInfo> {
  const c = info.config;
  const want: Partial<StreamConfig> = {};
  if (options.maxAgeMs !== undefined && c.max_age !== nanos(options.maxAgeMs)) want.max_age = nanos(options.maxAgeMs);
  if (options.replicas !== undefined && c.num_replicas !== options.replicas) want.num_replicas = options.replicas;
  if (options.duplicateWindowMs !== undefined && c.duplicate_window !== nanos(options.duplicateWindowMs)) want.duplicate_window = nanos(options.duplicateWindowMs);
  if (options.maxBytes !== undefined && c.max_bytes !== options.maxBytes) want.max_bytes = options.maxBytes;
  if (!c.subjects?.includes(spec.subjects)) want.subjects = [...(c.subjects ?? []), spec.subjects];
  if (Object.keys(want).length === 0) return info;
  return await jsm.streams.update(spec.name, { ...c, ...want });
}

/** BAD_REQUEST for options the server would refuse or that make no sense. */
export function checkStreamOptions(spec: StreamSpec, o: StreamOptions): void {
  const bad = (what: string) => new MeshError("BAD_REQUEST", `${spec.label}: ${what}`);
  if (o.maxAgeMs !== undefined && !(Number.isSafeInteger(o.maxAgeMs) && o.maxAgeMs > 0)) throw bad("maxAgeMs must be a positive whole number");
  if (o.replicas !== undefined && !(Number.isInteger(o.replicas) && o.replicas >= 1 && o.replicas <= 5)) throw bad("replicas must be 1 to 5");
  if (o.duplicateWindowMs !== undefined && !(Number.isSafeInteger(o.duplicateWindowMs) && o.duplicateWindowMs > 0)) throw bad("duplicateWindowMs must be a positive whole number");
  if (o.maxBytes !== undefined && !(Number.isSafeInteger(o.maxBytes) && (o.maxBytes > 0 || o.maxBytes === -1))) throw bad("maxBytes must be positive, or -1 for no cap");
  if (o.maxAgeMs !== undefined && o.duplicateWindowMs !== undefined && o.duplicateWindowMs > o.maxAgeMs) throw bad("duplicateWindowMs may not exceed maxAgeMs");
}

export function apiCode(e: unknown): number | undefined {
  return (e as { api_error?: { err_code?: number } })?.api_error?.err_code;
}

function streamError(spec: StreamSpec, e: unknown): MeshError {
  if (isMeshError(e)) return e;
  const message = (e as Error)?.message ?? String(e);
  if (apiCode(e) === REPLICAS_NOT_SUPPORTED) return new MeshError("BAD_REQUEST", `${spec.label}: ${message}`, { cause: e });
  if ((e as NatsError)?.code === "503") return new MeshError("UNAVAILABLE", "JetStream did not answer (no JetStream, or no meta leader yet)", { cause: e });
  return new MeshError("UNAVAILABLE", `cannot create the ${spec.label} ${spec.name}: ${message}`, { cause: e });
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
