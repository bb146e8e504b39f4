// Hostile input, property-based: random bytes, msgpack of the wrong types, huge strings,
// deep nesting, lying length prefixes, malformed mesh headers and payloads around
// max_payload, published with raw nats.js straight to a service's subjects. Every
// request gets a mesh error reply (or a valid reply, when the input happened to be
// valid); fire-and-forget copies are dropped with a log line; good calls through the
// mesh keep succeeding; the service process stays alive with bounded memory.
// SVCMESH_HOSTILE_RUNS = messages (CI 5,000; `pnpm soak` 100,000), within
// SVCMESH_HOSTILE_TIME_LIMIT_S; SVCMESH_HOSTILE_SEED replays a run.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, isMeshError, type Mesh } from "svcmesh";
import { asNatsHeaders, decodeBody, decodeReply, encodeBody, exactLane, Header, majorLane } from "svcmesh/internal";
import { type MemoryReport, Payment } from "../../packages/svcmesh/test/fixtures/payments-service.ts";
import { type NatsServer, sleep, startNatsServer } from "../helpers/nats-server.ts";

const RUNS = Number(process.env.SVCMESH_HOSTILE_RUNS ?? 5_000);
const TIME_LIMIT_MS = Number(process.env.SVCMESH_HOSTILE_TIME_LIMIT_S ?? 50) * 1000;
const SEED = Number(process.env.SVCMESH_HOSTILE_SEED ?? Date.now() % 2 ** 31);
/** Messages in flight at once: one property run sends a batch of this many concurrently. */
const BATCH = 64;
/** Good calls through the mesh client alongside each batch. */
const GOOD_PER_BATCH = 2;
/** A reply slower than this counts as "no reply". */
const REPLY_TIMEOUT_MS = 5_000;
/**
 * Growth of the service's heap (after a full GC) we accept over the whole run. A soak of
 * 100k messages grows it ~2 MB; with header values keeping their blocks alive it grew 17.
 */
const MAX_HEAP_GROWTH = 16 * 1024 * 1024;
const MAX_RSS = 768 * 1024 * 1024;

const SERVICE = "payments";
const VERSION = "2.1.0";
const DROP_LOG = "dropped a failed request that has no reply subject";
/** What hostile input may be answered with: nothing it sends is the handler's or the path's fault. */
const EXPECTED_CODES = new Set(["BAD_REQUEST", "TIMEOUT", "NOT_FOUND"]);

const fixture = fileURLToPath(new URL("../../packages/svcmesh/test/fixtures/payments-service.ts", import.meta.url));
const enc = new TextEncoder();
let server: NatsServer;
let service: ChildProcess;
let raw: NatsConnection;
let mesh: Mesh;
let maxPayload: number;
const serviceLog = { lines: 0, drops: 0, errors: 0, byMessage: new Map<string, number>() };

// ---------------------------------------------------------------- the messages

type Target = "major" | "exact" | "unknown-endpoint";

/** One hostile message; its printed form (fast-check counterexamples) stays short. */
class Hostile {
  constructor(
    readonly kind: string,
    readonly body: Uint8Array,
    /** A raw NATS header block (possibly malformed), or none. */
    readonly headers: Uint8Array | undefined,
    readonly target: Target,
    /** Also published once without a reply subject. */
    readonly twin: boolean,
  ) {}

  get size(): number {
    return this.body.length + (this.headers?.length ?? 0);
  }

  [fc.toStringMethod](): string {
    const hex = (b: Uint8Array) => Buffer.from(b.subarray(0, 24)).toString("hex") + (b.length > 24 ? "…" : "");
    const h = this.headers ? ` headers(${this.headers.length})=${JSON.stringify(Buffer.from(this.headers.subarray(0, 120)).toString("latin1"))}` : "";
    return `Hostile(${this.kind} → ${this.target}${this.twin ? " +twin" : ""}, body(${this.body.length})=${hex(this.body)}${h})`;
  }
}

const claimArb = fc.record({
  claimId: fc.string({ minLength: 1, maxLength: 64 }),
  usd: fc.double({ min: 0.01, max: 1_000_000, noNaN: true }),
  payee: fc.record({ name: fc.string({ minLength: 1, maxLength: 200 }), iban: fc.stringMatching(/^[A-Z]{2}[0-9A-Z]{10,30}$/) }),
  lines: fc.array(fc.record({ sku: fc.string({ minLength: 1, maxLength: 64 }), qty: fc.integer({ min: 1, max: 10_000 }), usd: fc.double({ min: 0, max: 1e6, noNaN: true }) }), { maxLength: 5 }),
  tags: fc.option(fc.dictionary(fc.string({ maxLength: 32 }), fc.string({ maxLength: 256 }), { maxKeys: 4 }), { nil: undefined }),
  note: fc.option(fc.string({ maxLength: 200 }), { nil: undefined }),
});
type Claim = typeof claimArb extends fc.Arbitrary<infer T> ? T : never;
const claimField = fc.constantFrom("claimId", "usd", "payee", "lines", "tags", "note", "extra");

/** A claim with `key` replaced by raw msgpack bytes (encoded maps stay under 16 keys: a fixmap). */
function claimWithRaw(claim: Claim, key: string, value: Uint8Array): Uint8Array {
  const rest: Record<string, unknown> = { ...claim };
  delete rest[key];
  const head = encodeBody(rest);
  assert.equal(head[0]! & 0xf0, 0x80, "an encoded claim is a fixmap");
  return Buffer.concat([Uint8Array.of(head[0]! + 1), head.subarray(1), encodeBody(key), value]);
}

/** `depth` nested arrays or maps around nil, as raw msgpack: encoders refuse to build these. */
function deepBytes(depth: number, kind: "array" | "map"): Uint8Array {
  const unit = kind === "array" ? [0x91] : [0x81, 0xa1, 0x61];
  const out = Buffer.alloc(depth * unit.length + 1, 0xc0);
  for (let i = 0; i < depth; i++) out.set(unit, i * unit.length);
  return out;
}

/** A msgpack str of `n` copies of `ch`. */
function hugeString(n: number, ch: string): Uint8Array {
  return encodeBody(ch.repeat(n));
}

/** A header block made of `lines` (no validation: that is the point). */
function headerBlock(lines: readonly string[], statusLine = "NATS/1.0"): Uint8Array {
  return Buffer.from(`${statusLine}\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`, "latin1");
}

const hugeText = (min: number, max: number) => fc.tuple(fc.integer({ min, max }), fc.constantFrom("x", "é", "\u{1F4A5}", "\0")).map(([n, ch]) => ch.repeat(Math.ceil(n / Buffer.byteLength(ch))));
const headerText = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 80 }) },
  { weight: 1, arbitrary: hugeText(2_000, 200_000) },
);
const pastOrGarbageDeadline = fc.oneof(
  fc.constantFrom("", "abc", "-1", "0", "NaN", "Infinity", "-Infinity", "1e400", "0x7fffffff", "1.5", " 12 ", "9".repeat(400), "1e-300"),
  fc.integer({ min: -1e15, max: 1e9 }).map(String),
  fc.string({ maxLength: 30 }),
);
/** Far enough ahead that the twin sent later sees the same outcome. */
const futureDeadline = fc.integer({ min: 60_000, max: 1e12 }).map((ahead) => String(Date.now() + ahead));
const tokenText = fc.oneof(
  headerText,
  fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join(".")),
  fc.constantFrom("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtYWxsb3J5In0.c2ln", "Bearer x", "...."),
);
const hex = (maxLength: number) => fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF-"), maxLength });
const traceText = fc.oneof(
  headerText,
  fc.tuple(fc.constantFrom("00", "ff", "zz", "01"), hex(40), hex(20), hex(4)).map((p) => p.join("-")),
);

/** Mesh headers with hostile values, sometimes repeated, in any order. */
const meshHeaders = fc
  .record(
    {
      [Header.deadline]: fc.oneof(pastOrGarbageDeadline, futureDeadline),
      [Header.caller]: headerText,
      [Header.requestId]: headerText,
      [Header.token]: tokenText,
      [Header.policy]: headerText,
      [Header.traceparent]: traceText,
      [Header.tracestate]: headerText,
      [Header.errorCode]: fc.constantFrom("BAD_REQUEST", "nope"),
    },
    { requiredKeys: [] },
  )
  .chain((h) => fc.tuple(fc.shuffledSubarray(Object.entries(h)), fc.boolean()).map(([entries, twice]) => {
    const lines = entries.map(([k, v]) => `${k}: ${v}`);
    return twice ? [...lines, ...lines.reverse()] : lines;
  }))
  .map((lines) => headerBlock(lines));

/** Header blocks a NATS library would never produce. */
const malformedHeaders = fc.oneof(
  fc.constantFrom(
    headerBlock([], "NATS/1.0 503"),
    headerBlock([`${Header.errorCode}: NOT_FOUND`], "NATS/1.0 408 Request Timeout"),
    headerBlock([], "NATS/1.0 100 Idle Heartbeat"),
    headerBlock([`${Header.deadline}`, `${Header.caller}`, ":", "::::"]),
    headerBlock([], "HTTP/1.1 200 OK"),
    enc.encode("NATS/1.0\r\n\r\n"),
    enc.encode("NATS/1.0"),
    enc.encode("\r\n\r\n"),
  ),
  // Many lines with empty values, LF only: every line is a key the scanner looks at.
  fc.tuple(fc.constantFrom(Header.deadline, Header.caller, Header.token, Header.traceparent, "Mesh-", "M", "t"), fc.integer({ min: 1, max: 60_000 }), fc.constantFrom("\n", "\r\n", "\r"))
    .map(([key, n, eol]) => enc.encode(`NATS/1.0${eol}${`${key}:${eol}`.repeat(n)}${eol}`)),
  fc.uint8Array({ minLength: 1, maxLength: 600 }).map((b) => Buffer.concat([enc.encode("NATS/1.0\r\n"), b, enc.encode("\r\n\r\n")])),
  fc.uint8Array({ minLength: 1, maxLength: 600 }),
);

/** A msgpack header that promises far more than follows. */
const lyingLength = fc.tuple(fc.constantFrom(0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0xc9, 0xd9), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }))
  .map(([type, n, rest]) => {
    const width = type === 0xdc || type === 0xde ? 2 : type === 0xd9 ? 1 : 4;
    const head = Buffer.alloc(1 + width);
    head[0] = type;
    head.writeUIntBE(n % 2 ** (8 * width), 1, width);
    return Buffer.concat([head, rest]);
  });

function bodyKind(kind: string, body: fc.Arbitrary<Uint8Array>): fc.Arbitrary<{ kind: string; body: Uint8Array }> {
  return body.map((b) => ({ kind, body: b }));
}

function bodies(max: number): fc.Arbitrary<{ kind: string; body: Uint8Array }> {
  return fc.oneof(
    { weight: 12, arbitrary: bodyKind("valid", claimArb.map((c) => encodeBody(c))) },
    { weight: 16, arbitrary: bodyKind("random-bytes", fc.uint8Array({ maxLength: 4096 })) },
    { weight: 16, arbitrary: bodyKind("wrong-type", fc.anything({ maxDepth: 4 }).map((v) => encodeBody(v))) },
    { weight: 16, arbitrary: bodyKind("wrong-field", fc.tuple(claimArb, claimField, fc.anything({ maxDepth: 3 })).map(([c, k, v]) => claimWithRaw(c, k, encodeBody(v)))) },
    { weight: 6, arbitrary: bodyKind("lying-length", lyingLength) },
    { weight: 2, arbitrary: bodyKind("huge-string", fc.tuple(claimArb, claimField, fc.integer({ min: 10_000, max: max - 4096 }), fc.constantFrom("x", "é", "\u{1F4A5}"))
      .map(([c, k, n, ch]) => claimWithRaw(c, k, hugeString(Math.floor(n / Buffer.byteLength(ch)), ch)))) },
    { weight: 2, arbitrary: bodyKind("huge-key", fc.tuple(claimArb, fc.integer({ min: 1_000, max: max - 2048 }), fc.integer({ min: 1, max: 40 }))
      .map(([c, n, keys]) => encodeBody({ ...c, tags: Object.fromEntries(Array.from({ length: keys }, (_, i) => [`${i}`.padEnd(Math.floor(n / keys), "k"), "v"])) }))) },
    { weight: 2, arbitrary: bodyKind("deep", fc.tuple(claimArb, fc.constantFrom("top", "claimId", "tags", "lines", "payee"), fc.integer({ min: 1_000, max: 150_000 }), fc.constantFrom("array" as const, "map" as const))
      .map(([c, where, depth, kind]) => (where === "top" ? deepBytes(depth, kind) : claimWithRaw(c, where, deepBytes(depth, kind))))) },
    { weight: 1, arbitrary: bodyKind("near-max-payload", fc.tuple(claimArb, fc.integer({ min: -4096, max: 4096 }))
      .map(([c, delta]) => {
        const base = encodeBody({ ...c, note: "" });
        return claimWithRaw(c, "note", hugeString(Math.max(0, max + delta - base.length - 5), "n"));
      })) },
  );
}

function hostileArb(max: number): fc.Arbitrary<Hostile> {
  const headers = fc.oneof(
    { weight: 6, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: meshHeaders },
    { weight: 1, arbitrary: malformedHeaders },
  );
  const target = fc.oneof(
    { weight: 6, arbitrary: fc.constant<Target>("major") },
    { weight: 3, arbitrary: fc.constant<Target>("exact") },
    { weight: 1, arbitrary: fc.constant<Target>("unknown-endpoint") },
  );
  return fc.tuple(bodies(max), headers, target, fc.integer({ min: 0, max: 4 }))
    .map(([{ kind, body }, h, t, twin]) => new Hostile(h === undefined ? kind : `${kind}+headers`, body, h, t, twin === 0));
}

function subjectOf(target: Target): string {
  if (target === "major") return `${majorLane(SERVICE, 2)}.reimburse`;
  if (target === "exact") return `${exactLane(SERVICE, VERSION)}.reimburse`;
  return `${exactLane(SERVICE, VERSION)}.refund`;
}

// ---------------------------------------------------------------- sending

type Outcome =
  | { type: "ok"; value: unknown }
  | { type: "error"; code: string; message: string }
  | { type: "refused" }
  | { type: "no-reply" };

const natsCode = (e: unknown) => (e as { code?: string }).code;

async function send(m: Hostile): Promise<Outcome> {
  const subject = subjectOf(m.target);
  const headers = m.headers ? asNatsHeaders({ encode: () => m.headers! }) : undefined;
  let outcome: Outcome;
  try {
    const reply = await raw.request(subject, m.body, { timeout: REPLY_TIMEOUT_MS, headers });
    try {
      outcome = { type: "ok", value: decodeReply(reply, subject) };
    } catch (e) {
      if (!isMeshError(e)) throw e;
      outcome = { type: "error", code: e.code, message: e.message };
    }
  } catch (e) {
    if (natsCode(e) === "MAX_PAYLOAD_EXCEEDED") outcome = { type: "refused" };
    else if (natsCode(e) === "TIMEOUT") outcome = { type: "no-reply" };
    else throw e;
  }
  if (m.twin) {
    try {
      raw.publish(subject, m.body, { headers });
    } catch (e) {
      if (natsCode(e) !== "MAX_PAYLOAD_EXCEEDED") throw e;
    }
  }
  return outcome;
}

/** What every hostile message must lead to. */
function checkOutcome(m: Hostile, o: Outcome): void {
  const fits = m.size <= maxPayload;
  assert.equal(o.type === "refused", !fits, `${m[fc.toStringMethod]()}: refused exactly when over max_payload (${maxPayload}), got ${o.type}`);
  assert.notEqual(o.type, "no-reply", `${m[fc.toStringMethod]()}: no reply within ${REPLY_TIMEOUT_MS} ms`);
  if (o.type === "error") {
    assert.ok(EXPECTED_CODES.has(o.code), `${m[fc.toStringMethod]()}: unexpected ${o.code}: ${o.message}`);
  } else if (o.type === "ok") {
    assert.notEqual(m.target, "unknown-endpoint", `${m[fc.toStringMethod]()}: an unknown endpoint answered`);
    assert.ok(Payment.safeParse(o.value).success, `${m[fc.toStringMethod]()}: success reply is not a Payment: ${JSON.stringify(o.value)}`);
  }
}

let goodSeq = 0;
async function goodCall(): Promise<void> {
  const claimId = `good-${++goodSeq}`;
  const out = await mesh.call<{ txn: string; total: number }>(`${SERVICE}@^2`, "reimburse", {
    claimId, usd: 12.5, payee: { name: "Ada", iban: "DE89370400440532013000" }, lines: [{ sku: "taxi", qty: 2, usd: 6.25 }],
  }, { timeoutMs: REPLY_TIMEOUT_MS });
  assert.equal(out.txn, `T-${claimId}`);
  assert.equal(out.total, 12.5);
}

// ---------------------------------------------------------------- the service process

function startService(): Promise<void> {
  service = spawn(process.execPath, ["--expose-gc", "--import", "tsx", fixture, SERVICE, VERSION], {
    // warn: the drop lines, and any error the service logs, without per-request noise.
    env: { ...process.env, NATS_URL: server.url, SVCMESH_LOG_LEVEL: "warn" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the service did not become ready in 20 s")), 20_000);
    let pending = "";
    service.stdout!.on("data", (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("ready ")) {
          clearTimeout(timer);
          resolve();
        } else if (line.startsWith("{")) countLogLine(line);
      }
    });
    service.once("exit", (code, signal) => reject(new Error(`the service exited early (${code ?? signal})`)));
  });
}

function countLogLine(line: string): void {
  serviceLog.lines++;
  let entry: { level?: number; msg?: string };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return;
  }
  const msg = String(entry.msg ?? "").slice(0, 100);
  if (msg === DROP_LOG) serviceLog.drops++;
  if ((entry.level ?? 0) >= 50) serviceLog.errors++;
  serviceLog.byMessage.set(msg, (serviceLog.byMessage.get(msg) ?? 0) + 1);
}

async function serviceMemory(): Promise<MemoryReport & { peakRss: number }> {
  const m = await mesh.call<MemoryReport>(SERVICE, "memory", undefined, { timeoutMs: REPLY_TIMEOUT_MS });
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${service.pid}/status`, "utf8"));
  return { ...m, peakRss: hwm ? Number(hwm[1]) * 1024 : m.rss };
}

const mb = (n: number) => (n / 1024 / 1024).toFixed(0);

before(async () => {
  server = await startNatsServer({ jetstream: true });
  await startService();
  raw = await natsConnect({ servers: server.url, name: "hostile" });
  maxPayload = raw.info!.max_payload;
  mesh = await connect({ servers: server.url, name: "claims" });
});

after(async () => {
  service?.kill("SIGKILL");
  await raw?.close();
  await mesh?.close();
  await server?.stop();
});

test(`hostile messages to ${SERVICE}.reimburse get error replies, and the service keeps serving`, { timeout: TIME_LIMIT_MS + 120_000 }, async () => {
  console.log(`hostile-input: seed ${SEED} (SVCMESH_HOSTILE_SEED=${SEED} replays it), ${RUNS} messages, ${TIME_LIMIT_MS / 1000} s bound, max_payload ${maxPayload}`);
  for (let i = 0; i < 100; i++) await goodCall(); // warm up before the memory baseline
  const baseline = await serviceMemory();

  const tally = { messages: 0, twins: 0, ok: 0, refused: 0, noReply: 0, good: 0, twinsFailed: 0, codes: new Map<string, number>(), kinds: new Map<string, number>() };
  const startedAt = Date.now();
  const numRuns = Math.ceil(RUNS / BATCH);
  await fc.assert(
    fc.asyncProperty(fc.array(hostileArb(maxPayload), { minLength: BATCH, maxLength: BATCH }), async (batch) => {
      const [outcomes] = await Promise.all([
        Promise.all(batch.map(send)),
        Promise.all(Array.from({ length: GOOD_PER_BATCH }, goodCall)),
      ]);
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!;
        const o = outcomes[i]!;
        if (o.type === "no-reply" || o.type === "error" && !EXPECTED_CODES.has(o.code)) console.log(`hostile-input: FAILING ${m[fc.toStringMethod]()}: ${JSON.stringify(o)}`);
        tally.messages++;
        tally.kinds.set(m.kind, (tally.kinds.get(m.kind) ?? 0) + 1);
        if (o.type === "ok") tally.ok++;
        else if (o.type === "refused") tally.refused++;
        else if (o.type === "no-reply") tally.noReply++;
        else tally.codes.set(o.code, (tally.codes.get(o.code) ?? 0) + 1);
        checkOutcome(m, o);
        if (m.twin && o.type !== "refused") {
          tally.twins++;
          if (o.type === "error") tally.twinsFailed++;
        }
      }
      tally.good += GOOD_PER_BATCH;
    }),
    { seed: SEED, numRuns, plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS, { failOnInterrupt: true })] },
  );
  const seconds = (Date.now() - startedAt) / 1000;

  // Fire-and-forget copies of failing messages each leave one log line (they may still be in the pipe).
  for (let i = 0; i < 100 && serviceLog.drops < tally.twinsFailed; i++) await sleep(50);
  for (let i = 0; i < 20; i++) await goodCall(); // still serving after it all
  const end = await serviceMemory();
  assert.equal(service.exitCode, null, "the service process is alive");

  const codes = [...tally.codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(", ");
  console.log(
    `hostile-input: ${tally.messages} messages (+${tally.twins} without reply) in ${seconds.toFixed(1)} s (${Math.round(tally.messages / seconds)}/s), seed ${SEED}: ` +
      `${tally.messages - tally.ok - tally.refused - tally.noReply} error replies (${codes}), ${tally.ok} valid, ${tally.refused} refused over max_payload, ${tally.noReply} no reply; ` +
      `${tally.good}/${tally.good} good calls ok; ${serviceLog.drops}/${tally.twinsFailed} drops logged, ${serviceLog.errors} error log lines; ` +
      `service RSS ${mb(baseline.rss)} → ${mb(end.rss)} MB (peak ${mb(end.peakRss)}), heap after GC ${mb(baseline.heapUsed)} → ${mb(end.heapUsed)} MB`,
  );
  console.log(`hostile-input: kinds ${[...tally.kinds].sort().map(([k, n]) => `${k} ${n}`).join(", ")}`);
  if (serviceLog.byMessage.size > 0) console.log(`hostile-input: service log ${[...serviceLog.byMessage].map(([m, n]) => `${JSON.stringify(m)} ×${n}`).join(", ")}`);

  assert.ok(tally.messages >= RUNS, `${tally.messages} of ${RUNS} messages ran within ${TIME_LIMIT_MS / 1000} s`);
  assert.equal(serviceLog.drops, tally.twinsFailed, "each failing message without a reply subject is dropped with a log line");
  assert.equal(serviceLog.errors, 0, "the service logged no errors");
  assert.ok(end.heapUsed - baseline.heapUsed < MAX_HEAP_GROWTH, `heap after GC grew ${mb(end.heapUsed - baseline.heapUsed)} MB`);
  assert.ok(end.peakRss < MAX_RSS, `peak RSS ${mb(end.peakRss)} MB`);
});

test("a raw client that publishes over max_payload is cut off by the server; the service is unaffected", async () => {
  // nats.js refuses these before sending; a client that does not check gets -ERR and is disconnected.
  const socket = tcpConnect(server.port, "127.0.0.1");
  let received = "";
  socket.on("data", (d: Buffer) => (received += d.toString()));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", () => undefined);
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write('CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n');
  // The server refuses on the size in the PUB line; writing the payload too would race its close.
  socket.write(`PUB ${subjectOf("major")} _INBOX.raw ${maxPayload + 1}\r\n`);
  await Promise.race([closed, sleep(5_000)]);
  assert.match(received, /-ERR 'Maximum Payload Violation'/);
  assert.equal(socket.destroyed, true, "the server closed the connection");
  await goodCall();
  assert.equal(service.exitCode, null);
});

// Regressions for what the property found.

const validClaim = { claimId: "C-1", usd: 10, payee: { name: "Ada", iban: "DE89370400440532013000" }, lines: [] };

async function requestError(body: Uint8Array, headerBlockBytes?: Uint8Array): Promise<{ code: string; message: string; details: unknown }> {
  const subject = subjectOf("major");
  const reply = await raw.request(subject, body, { timeout: REPLY_TIMEOUT_MS, headers: headerBlockBytes && asNatsHeaders({ encode: () => headerBlockBytes }) });
  try {
    decodeReply(reply, subject);
  } catch (e) {
    assert.ok(isMeshError(e));
    return { code: e.code, message: e.message, details: e.details };
  }
  assert.fail("expected an error reply");
}

test("distinct huge Mesh-Caller values are refused, not kept as rate-limit buckets", async () => {
  const before = await serviceMemory();
  for (let i = 0; i < 150; i++) {
    const e = await requestError(encodeBody(validClaim), headerBlock([`${Header.caller}: ${i}-${"c".repeat(200_000)}`]));
    assert.equal(e.code, "BAD_REQUEST");
    assert.match(e.message, /Mesh-Caller is \d+ characters long/);
  }
  const e = await requestError(encodeBody(validClaim), headerBlock([`${Header.requestId}: ${"r".repeat(10_000)}`]));
  assert.equal(e.code, "BAD_REQUEST");
  const after = await serviceMemory();
  // Kept, 150 × 200 KB would be 30 MB.
  assert.ok(after.heapUsed - before.heapUsed < 10 * 1024 * 1024, `heap after GC grew ${mb(after.heapUsed - before.heapUsed)} MB`);
});

test("short Mesh-Caller values from huge header blocks do not keep the blocks alive as rate-limit buckets", async () => {
  // A caller name read from a header block must not hold on to the block: the service
  // keeps a rate-limit bucket per caller name, up to 10,000 of them.
  const before = await serviceMemory();
  const subject = subjectOf("major");
  for (let i = 0; i < 150; i++) {
    const block = headerBlock([`${Header.caller}: padded-caller-${i}`, `X-Padding: ${"p".repeat(200_000)}`]);
    const reply = await raw.request(subject, encodeBody(validClaim), { timeout: REPLY_TIMEOUT_MS, headers: asNatsHeaders({ encode: () => block }) });
    assert.ok(decodeReply(reply, subject) !== undefined, "a valid claim is answered");
  }
  const after = await serviceMemory();
  // Kept, 150 × 200 KB would be 30 MB.
  assert.ok(after.heapUsed - before.heapUsed < 10 * 1024 * 1024, `heap after GC grew ${mb(after.heapUsed - before.heapUsed)} MB`);
});

test("invalid input whose issues name huge record keys still gets its BAD_REQUEST reply", async () => {
  const keys = 30;
  const keyChars = Math.floor((maxPayload - 8_000) / keys);
  const tags = Object.fromEntries(Array.from({ length: keys }, (_, i) => [`${i}`.padEnd(keyChars, "k"), "v"]));
  const e = await requestError(encodeBody({ ...validClaim, tags }));
  assert.equal(e.code, "BAD_REQUEST");
  const issues = (e.details as { issues: { path: (string | number)[] }[] }).issues;
  assert.equal(issues.length, keys, "one issue per key");
  for (const i of issues) for (const p of i.path) assert.ok(String(p).length <= 64, "paths echo at most 64 characters of a key");
});

test("a failed request without a reply subject is dropped with a log line", async () => {
  const drops = serviceLog.drops;
  raw.publish(subjectOf("major"), Uint8Array.of(0xc1));
  for (let i = 0; i < 100 && serviceLog.drops === drops; i++) await sleep(20);
  assert.equal(serviceLog.drops, drops + 1);
});

test("a few bytes promising a 30M-element array are BAD_REQUEST, without a memory spike", async () => {
  const lie = Buffer.alloc(5);
  lie[0] = 0xdd; // array 32
  lie.writeUInt32BE(30_000_000, 1);
  assert.throws(() => decodeBody(lie), /maxArrayLength/);
  writeFileSync(`/proc/${service.pid}/clear_refs`, "5"); // resets the peak RSS (VmHWM)
  const before = await serviceMemory();
  for (let i = 0; i < 20; i++) assert.equal((await requestError(lie)).code, "BAD_REQUEST");
  const after = await serviceMemory();
  // Preallocated, each would be 240 MB.
  assert.ok(after.peakRss - before.rss < 100 * 1024 * 1024, `peak RSS rose ${mb(after.peakRss - before.rss)} MB`);
});
