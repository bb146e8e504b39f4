// The policy in force: a NATS KV bucket holding the document's YAML text, applied by
// operators (`svcmesh apply`) and watched live by every instance and caller.
//
// - Bucket `svcmesh_policies` (the name the broker config grants services read-only
//   access to), key `policy`, history POLICY_HISTORY. The value is the YAML text as
//   written, so `svcmesh policy show` prints what the operator wrote.
// - applyPolicy() validates first: an invalid document is refused whole (MeshError
//   BAD_REQUEST, details.errors with lines and columns) and nothing is stored. It
//   creates the bucket when missing (only operators may; services can only read).
// - The policy in force is the fold of the key's history: a put that parses replaces
//   it, a delete or purge removes it (open mesh), and a put that does not parse
//   (someone wrote the bucket without `apply`) is logged and ignored. getPolicy() and
//   watchPolicy() agree on that rule. (Only the last POLICY_HISTORY values are kept:
//   should that many garbage puts follow the last good one, it is gone too.)
// - watchPolicy() never creates the bucket: until it exists the policy is "none" (the
//   mesh is open) and the watcher looks for it again with a bounded backoff (250 ms
//   doubling to 2 s). Once watching, nats.js's ordered consumer survives reconnects;
//   should the watch end anyway (the stream deleted, a fatal error), it starts over
//   with the same backoff. A failure to watch never removes a policy already delivered
//   (only a delete, a purge or the bucket gone do); the watcher's `problem` says why
//   none is known, for connect()'s policy.required.
// - A `policy_applied` event (revision, by, sha) is published on
//   `svc.events.policy_applied._mesh` after each apply (a plain publish: the SVC_EVENTS
//   stream stores it when it exists). Failing to publish it never fails the apply.
import { createHash } from "node:crypto";
import { type KV, type KvEntry, type KvWatchOptions, KvWatchInclude, type NatsConnection } from "nats";
import type { Logger } from "pino";
import { MeshError, isMeshError } from "../errors.js";
import { eventSchemas } from "../events/schemas.js";
import { streamInfo } from "../jetstream/stream.js";
import { RepeatedLog } from "../logger.js";
import { EVENTS_ROOT } from "../subjects.js";
import { encodeBody } from "../wire.js";
import { parsePolicy, type PolicyError } from "./parse.js";
import type { PolicyDocument } from "./schema.js";

/** The KV bucket of the policy (the broker config's `policyBucket`). */
export const POLICY_BUCKET = "svcmesh_policies";
/** The key the document lives under. */
export const POLICY_KEY = "policy";
/** Revisions the bucket keeps when this library creates it. */
export const POLICY_HISTORY = 10;
/** The `service` token of policy events: about the whole mesh; never a service name. */
export const POLICY_EVENT_SERVICE = "_mesh";
/** Where `policy_applied` events go. */
export const POLICY_APPLIED_SUBJECT = `${EVENTS_ROOT}.policy_applied.${POLICY_EVENT_SERVICE}`;

const STREAM = `KV_${POLICY_BUCKET}`;
const RETRY_MIN_MS = 250;
const NOTHING_APPLIED = "no policy has been applied";
const NOTHING_APPLIED_KEY = `${NOTHING_APPLIED} (the key ${POLICY_KEY} holds no valid one: never applied, deleted or purged)`;
const RETRY_MAX_MS = 2_000;
/** If nats.js never says the initial values are in, deliver the current state anyway after this. */
const INITIAL_FALLBACK_MS = 2_000;

/** A policy in force. */
export interface StoredPolicy {
  /** The KV revision (stream sequence) it was stored with. */
  revision: number;
  /** The YAML text as applied. */
  text: string;
  policy: PolicyDocument;
}

export interface ApplyPolicyOptions {
  /** Who applies it (an operator or tool name); goes into the policy_applied event. */
  by: string;
  /**
   * Store only if the revision in force is still this one (optimistic concurrency: 0
   * = only if the key was never written). A mismatch fails with MeshError BAD_REQUEST
   * (details: expected, current) and nothing is stored.
   */
  ifRevision?: number;
}

export interface AppliedPolicy {
  revision: number;
  policy: PolicyDocument;
  /** sha256 of the text, hex. */
  sha: string;
  /** Non-fatal remarks from parsePolicy (with positions). */
  warnings: PolicyError[];
  /** Whether the policy_applied event went out (a plain publish, stored by SVC_EVENTS when that stream exists). */
  event: "published" | "failed";
}

export interface PolicyWatcher {
  /** Stops watching; no onChange after it resolves. */
  stop(): Promise<void>;
  /**
   * Why no policy is known here (nothing applied, the bucket refused, no JetStream...),
   * or the last failure to watch; undefined once a policy is delivered and until the
   * next problem. Words connect()'s failure under policy.required.
   */
  readonly problem: string | undefined;
  /** Whether `problem` is the server's permissions refusing the bucket. */
  readonly refused: boolean;
}

export type PolicyChangeHandler = (policy: StoredPolicy | undefined) => void;

export interface PolicyWatchHooks {
  /** Each time the server's permissions refuse the bucket (`problem` then says so). */
  onRefused?(): void;
}

export function policySha(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A NATS connection, not undefined or a Mesh: a clear BAD_REQUEST instead of a TypeError inside nats.js. */
function checkConnection(nc: unknown, fn: string): void {
  if (typeof (nc as NatsConnection | undefined)?.jetstreamManager !== "function") {
    throw new MeshError("BAD_REQUEST", `${fn}(): the first argument must be a NATS connection (a mesh's is mesh.nc)`);
  }
}

/**
 * Validates `text` and stores it as the policy in force. Invalid → MeshError
 * BAD_REQUEST with `details.errors` (PolicyError[]: line, column, path, message);
 * nothing is stored and the previous policy stays. Creates the bucket when missing.
 */
export async function applyPolicy(nc: NatsConnection, text: string, options: ApplyPolicyOptions): Promise<AppliedPolicy> {
  checkConnection(nc, "applyPolicy");
  const bad = (what: string) => new MeshError("BAD_REQUEST", `applyPolicy(): ${what}`);
  if (typeof text !== "string") throw bad("the policy document must be YAML text");
  if (typeof options?.by !== "string" || options.by.length === 0) throw bad("options.by must name who applies it");
  if (options.ifRevision !== undefined && !(Number.isSafeInteger(options.ifRevision) && options.ifRevision >= 0)) {
    throw bad(`options.ifRevision must be a whole number ≥ 0 (0: only if none was ever applied), not ${String(options.ifRevision)}`);
  }
  const parsed = parsePolicy(text);
  if (!parsed.ok) {
    const first = parsed.errors[0];
    const where = first ? `line ${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ""}${first.message}` : "";
    throw new MeshError("BAD_REQUEST", `invalid policy document (${parsed.errors.length} error${parsed.errors.length === 1 ? "" : "s"}; nothing applied)${where ? `: ${where}` : ""}`, {
      details: { errors: parsed.errors },
    });
  }
  const kv = await openBucket(nc, true);
  let revision: number;
  try {
    revision = options.ifRevision === undefined
      ? await kv.put(POLICY_KEY, encoder.encode(text))
      : options.ifRevision === 0
        ? await kv.create(POLICY_KEY, encoder.encode(text))
        : await kv.update(POLICY_KEY, encoder.encode(text), options.ifRevision);
  } catch (e) {
    if (options.ifRevision !== undefined && /wrong last sequence|key exists/i.test(String((e as Error).message))) {
      const current = await getPolicy(nc).catch(() => undefined);
      throw new MeshError("BAD_REQUEST", `the policy changed meanwhile (expected revision ${options.ifRevision}, in force: ${current?.revision ?? "none"}); nothing applied`, {
        details: { expected: options.ifRevision, current: current?.revision ?? null },
        cause: e,
      });
    }
    throw storeError(e, "storing the policy");
  }
  const sha = policySha(text);
  const event = await publishApplied(nc, revision, options.by, sha);
  return { revision, policy: parsed.policy, sha, warnings: parsed.warnings, event };
}

/**
 * The policy in force, or undefined when none is (no bucket, nothing applied, or the
 * key deleted): the mesh is open. A latest value that does not parse is skipped in
 * favour of the last one that does (see the fold rule above).
 */
export async function getPolicy(nc: NatsConnection): Promise<StoredPolicy | undefined> {
  checkConnection(nc, "getPolicy");
  const kv = await openBucket(nc, false);
  if (kv === undefined) return undefined;
  const latest = await kv.get(POLICY_KEY).catch((e: unknown) => {
    throw storeError(e, "reading the policy");
  });
  if (latest === null || latest.operation !== "PUT") return undefined;
  const one = toStored(latest);
  if (one !== undefined) return one;
  // The latest value is not a valid document: the last good one before it is in force.
  let state: StoredPolicy | undefined;
  const history = await kv.history({ key: POLICY_KEY });
  for await (const e of history) {
    state = fold(state, e);
    if (e.revision >= latest.revision) break;
  }
  return state;
}

/**
 * Calls `onChange` with the policy in force (undefined: none, the mesh is open) once
 * at first, then at every change, in order, within milliseconds of an apply. Values
 * that do not parse are logged and ignored. Never throws; problems are logged and
 * retried with a bounded backoff. A throwing onChange is logged.
 */
export function watchPolicy(nc: NatsConnection, onChange: PolicyChangeHandler, logger: Logger, hooks: PolicyWatchHooks = {}): PolicyWatcher {
  let stopped = false;
  let current: StoredPolicy | undefined;
  let delivered = false;
  let iterator: { stop(): void } | undefined;
  let sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  let restartNow = false;
  let problem: string | undefined;
  let refusedNow = false;

  const deliver = (next: StoredPolicy | undefined): void => {
    if (stopped) return;
    // Whoever delivers "none" has set `problem` to why.
    if (next) problem = undefined;
    if (next) refusedNow = false;
    if (delivered && next?.revision === current?.revision) return;
    current = next;
    delivered = true;
    try {
      onChange(next);
    } catch (e) {
      logger.error({ err: e }, "policy watcher: onChange threw");
    }
  };
  const sleep = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      sleeper = { timer: setTimeout(resolve, ms).unref(), resolve };
    }).then(() => {
      sleeper = undefined;
    });

  const run = async (): Promise<void> => {
    let backoff = RETRY_MIN_MS;
    let loggedMissing = false;
    let loggedNoJetStream = false;
    const failureLog = new RepeatedLog();
    while (!stopped && !nc.isClosed()) {
      try {
        const kv = await openBucket(nc, false);
        refusedNow = false; // the bucket (or its absence) could be looked at
        if (stopped) break;
        if (kv === undefined) {
          // No bucket yet: nothing applied, the mesh is open. Look again later.
          if (!loggedMissing) logger.debug({ bucket: POLICY_BUCKET }, "no policy bucket yet; the mesh is open until a policy is applied");
          loggedMissing = true;
          problem = `${NOTHING_APPLIED} (there is no bucket ${POLICY_BUCKET})`;
          deliver(undefined);
        } else {
          await watchOnce(kv);
          backoff = RETRY_MIN_MS; // it ran: start over quickly
          if (stopped) break;
          if (restartNow) {
            restartNow = false;
            continue;
          }
          logger.warn({ bucket: POLICY_BUCKET }, "policy watch ended; watching again");
        }
      } catch (e) {
        if (stopped) break;
        // A server without JetStream can hold no policy: the mesh is open there, and
        // connect() need not wait for one (we still look again, in case it is enabled).
        const noJetStream = isMeshError(e) && /JetStream is not available/.test(e.message);
        // Refused by the server's permissions: the policy cannot be known, and the mesh
        // runs open meanwhile. An error, said once a minute, not a warning per retry.
        const refused = /Permissions Violation/i.test(String((e as Error)?.message));
        problem = refused
          ? `the NATS server's permissions do not let this connection read the policy bucket ${POLICY_BUCKET} (grant it: svcmesh nats-config grants it by default)`
          : noJetStream
            ? "no JetStream on this NATS server, so it holds no policy"
            : `cannot watch the policy bucket ${POLICY_BUCKET}: ${String((e as Error)?.message)}`;
        refusedNow = refused;
        if (noJetStream && !delivered) deliver(undefined);
        if (refused) {
          try {
            hooks.onRefused?.();
          } catch (hookError) {
            logger.error({ err: hookError }, "policy watcher: onRefused threw");
          }
        }
        const logged = noJetStream && loggedNoJetStream ? undefined : failureLog.admit(String((e as Error)?.message));
        if (logged && refused) {
          // Revoked after a policy was read: that one stays in force, but changes go unheard.
          const enforced = current
            ? `the policy read before (revision ${current.revision}) stays in force and later changes are not followed`
            : "no policy is enforced here until it can read it";
          logger.error({ err: e, bucket: POLICY_BUCKET, heldBack: logged.held }, `policy watcher: the NATS server's permissions do not let this connection read the policy bucket ${POLICY_BUCKET}; ${enforced} (grant it: svcmesh nats-config grants it by default); retrying`);
        } else if (logged && noJetStream && current) {
          // JetStream gone after a policy was read (a server replaced, say): it stays in force.
          logger.warn({ bucket: POLICY_BUCKET, revision: current.revision }, "no JetStream on this NATS server any more: the policy cannot be followed; the last one read stays in force");
        } else if (logged && noJetStream) {
          // A development server without JetStream: expected, and no stack trace needed.
          logger.info({ bucket: POLICY_BUCKET }, "no JetStream on this NATS server: no policy can be stored, so the mesh is open");
        } else if (logged) {
          logger.warn({ err: e, retryInMs: backoff, heldBack: logged.held }, "policy watcher: cannot watch the policy bucket; retrying");
        }
        loggedNoJetStream ||= noJetStream;
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, RETRY_MAX_MS);
    }
  };

  const watchOnce = async (kv: KV): Promise<void> => {
    // Every retained value, then live updates: the fold gives the last good policy even
    // when the latest value is garbage.
    let state: StoredPolicy | undefined;
    let initialized = false;
    let fallback: NodeJS.Timeout | undefined;
    const initialize = (): void => {
      if (initialized) return;
      initialized = true;
      if (fallback) clearTimeout(fallback);
      if (!state) problem = NOTHING_APPLIED_KEY;
      deliver(state);
    };
    const opts: KvWatchOptions = { key: POLICY_KEY, include: KvWatchInclude.AllHistory, initializedFn: initialize };
    const it = await kv.watch(opts);
    iterator = it;
    if (stopped) {
      it.stop();
      return;
    }
    // Watching again (a reconnect) with the history not in yet: a guess of "none" would
    // drop the policy in force (an open mesh, or with policy.required no calls), so the
    // fallback waits on while the last one delivered was a policy.
    const fallBack = (): void => {
      if (state === undefined && current !== undefined) fallback = setTimeout(fallBack, INITIAL_FALLBACK_MS).unref();
      else initialize();
    };
    if (!initialized) fallback = setTimeout(fallBack, INITIAL_FALLBACK_MS).unref();
    try {
      for await (const e of it) {
        const next = fold(state, e, (err) => {
          logger.error(
            { bucket: POLICY_BUCKET, revision: e.revision, errors: err.slice(0, 5) },
            "ignoring a stored policy that does not parse (written without `svcmesh apply`?); the last good one stays in force",
          );
        });
        state = next;
        if (initialized) {
          if (!state) problem = NOTHING_APPLIED_KEY;
          deliver(state);
        }
      }
    } finally {
      if (fallback) clearTimeout(fallback);
      iterator = undefined;
    }
  };

  void run();
  // After a reconnect, watch afresh at once: the server may have lost the watch's
  // ephemeral consumer (a restart), which nats.js would otherwise notice only after
  // missing heartbeats (~10 s). Re-reading the history is cheap, and the revision
  // check keeps onChange from hearing the same policy twice.
  const statuses = nc.status();
  void (async () => {
    for await (const s of statuses) {
      if (stopped) break;
      if (s.type === "reconnect" && iterator) {
        restartNow = true;
        iterator.stop();
      }
    }
  })().catch(() => undefined);
  // A closed connection ends the watch (nats.js ends the iterator; the loop sees isClosed()).
  void nc.closed().then(() => {
    stopped = true;
    if (sleeper) {
      clearTimeout(sleeper.timer);
      sleeper.resolve();
    }
  });
  return {
    get problem() {
      return problem;
    },
    get refused() {
      return refusedNow;
    },
    stop: async () => {
      stopped = true;
      iterator?.stop();
      (statuses as { stop?: () => void }).stop?.();
      if (sleeper) {
        clearTimeout(sleeper.timer);
        sleeper.resolve();
      }
    },
  };
}

/** The next state from one history entry: a good put replaces, delete/purge clears, garbage is ignored. */
function fold(state: StoredPolicy | undefined, e: KvEntry, onInvalid?: (errors: PolicyError[]) => void): StoredPolicy | undefined {
  if (e.operation !== "PUT") return undefined;
  const text = decoder.decode(e.value);
  const parsed = parsePolicy(text);
  if (!parsed.ok) {
    onInvalid?.(parsed.errors);
    return state;
  }
  return { revision: e.revision, text, policy: parsed.policy };
}

function toStored(e: KvEntry): StoredPolicy | undefined {
  const text = decoder.decode(e.value);
  const parsed = parsePolicy(text);
  return parsed.ok ? { revision: e.revision, text, policy: parsed.policy } : undefined;
}

/** The bucket: created when `create` (operators), else bound only if it exists (undefined otherwise). */
async function openBucket(nc: NatsConnection, create: true): Promise<KV>;
async function openBucket(nc: NatsConnection, create: false): Promise<KV | undefined>;
async function openBucket(nc: NatsConnection, create: boolean): Promise<KV | undefined> {
  const js = nc.jetstream();
  try {
    if (create) return await js.views.kv(POLICY_BUCKET, { history: POLICY_HISTORY });
    if ((await streamInfo(await nc.jetstreamManager(), STREAM)) === undefined) return undefined;
    return await js.views.kv(POLICY_BUCKET, { bindOnly: true });
  } catch (e) {
    throw storeError(e, create ? "opening or creating the policy bucket" : "opening the policy bucket");
  }
}

function storeError(e: unknown, doing: string): MeshError {
  if (isMeshError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (/permissions violation/i.test(message)) return new MeshError("FORBIDDEN", `${doing}: ${message}`, { cause: e });
  if (/503|no responders|jetstream not enabled/i.test(message)) {
    return new MeshError("UNAVAILABLE", `${doing}: JetStream is not available on this NATS server (${message})`, { cause: e });
  }
  return new MeshError("UNAVAILABLE", `${doing}: ${message}`, { cause: e });
}

async function publishApplied(nc: NatsConnection, revision: number, by: string, sha: string): Promise<AppliedPolicy["event"]> {
  const checked = eventSchemas.policy_applied.safeParse({
    type: "policy_applied",
    service: POLICY_EVENT_SERVICE,
    at: Date.now(),
    source: by,
    revision,
    by,
    sha,
  });
  if (!checked.success) return "failed";
  // A plain publish: SVC_EVENTS (svc.events.>) stores it when that stream exists, and
  // live subscribers hear it either way. (A JetStream publish would be answered by any
  // plain subscriber to the subject when the stream is missing, and hang until timeout.)
  try {
    nc.publish(POLICY_APPLIED_SUBJECT, encodeBody(checked.data));
    await nc.flush();
    return "published";
  } catch {
    return "failed";
  }
}
