// Issue #6, restart: a JetStream server with a store dir, a service and two callers; a
// policy (revision 2) in force, calls that write audit records and cause mesh events.
// Then everything stops (the meshes, then nats-server killed by PID) and starts again on
// the same store dir and port. The policy is still in force (checked by behaviour: the
// denied caller is still denied), every audit record and event from before is still in
// its stream, unchanged and at the same sequence, and new calls work.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { applyPolicy, AUDIT_STREAM, connect, decodeAuditRecord, ensureAuditStream, ensureEventsStream, EVENTS_STREAM, getPolicy, type Mesh, MeshError, newIdentity } from "svcmesh";
import { type CallOutcome, figure, runLoad } from "../helpers/load.ts";
import { type NatsServer, sleep, startNatsServer } from "../helpers/nats-server.ts";

const ids = { payments: newIdentity(), claims: newIdentity(), auditor: newIdentity() };
type Name = keyof typeof ids;

const policy = (allow: Name[]) => `
version: 1
identities:
  payments: { key: ${ids.payments.publicKey} }
  claims:   { key: ${ids.claims.publicKey} }
  auditor:  { key: ${ids.auditor.publicKey} }
services:
  payments:
    allow: [${allow.join(", ")}]
`;

/** Opens on the 5th failure in its window, whatever the successes before. */
const BREAKER = { failureThreshold: 5, resetTimeoutMs: 200 };

let server: NatsServer | undefined;
const open = new Set<Mesh>();
const operators = new Set<NatsConnection>();

after(async () => {
  await Promise.allSettled([...open].map((m) => m.close()));
  await Promise.allSettled([...operators].map((nc) => nc.close()));
  await server?.[Symbol.asyncDispose]();
});

/** `blind`: a caller that does not follow the policy itself, so only the service can refuse it. */
async function as(name: Name, blind = false): Promise<Mesh> {
  const m = await connect({ servers: server!.url, name, seed: ids[name].seed, defaults: { breaker: BREAKER }, ...(blind ? { policy: { watch: false } } : {}) });
  open.add(m);
  if (blind) assert.equal(m.policy.inForce, undefined, "a blind caller knows no policy");
  return m;
}

async function operator(): Promise<NatsConnection> {
  const nc = await natsConnect({ servers: server!.url, name: "restart-operator" });
  operators.add(nc);
  return nc;
}

async function closeAll(): Promise<void> {
  // close() stores what is pending first: coalesced events, audit records.
  await Promise.all([...open].map((m) => m.close()));
  open.clear();
  await Promise.all([...operators].map((nc) => nc.close()));
  operators.clear();
}

/** The request ids of the calls whose handler ran: what the audit trail must hold. */
const handled: string[] = [];

async function servePayments(): Promise<void> {
  const host = await as("payments");
  await host.serve({
    name: "payments",
    version: "1.0.0",
    endpoints: {
      pay: { handler: (_req, ctx) => (handled.push(ctx.requestId), `paid for ${ctx.caller}`) },
      broken: { handler: (_req, ctx) => { handled.push(ctx.requestId); throw new MeshError("UNAVAILABLE", "ledger down"); } },
    },
  });
}

interface Stored {
  seq: number;
  subject: string;
  data: string;
}

/** Every message a stream holds, in order. */
async function storedMessages(nc: NatsConnection, stream: string): Promise<Stored[]> {
  const jsm = await nc.jetstreamManager();
  const { state } = await jsm.streams.info(stream);
  const out: Stored[] = [];
  for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    out.push({ seq, subject: m.subject, data: Buffer.from(m.data).toString("base64") });
  }
  return out;
}

function auditedRequestIds(records: Stored[]): string[] {
  return records.map((r) => {
    const decoded = decodeAuditRecord(Buffer.from(r.data, "base64"));
    assert.ok(decoded.ok, `audit record ${r.seq} decodes`);
    return decoded.record.requestId;
  });
}

const eventType = (e: Stored) => e.subject.split(".")[2]!;

/** Calls in sequence (concurrency 1 keeps the breaker's story deterministic). */
function calls(mesh: Mesh, endpoint: string, total: number, concurrency = 1): Promise<CallOutcome<string>[]> {
  return runLoad<string>({ total, concurrency, maxMs: 15_000, settleWithinMs: 5000, call: () => mesh.call<string>("payments", endpoint) });
}

test("after a restart of the whole mesh, the policy, audit records and events persisted in JetStream are all still there", async () => {
  server = await startNatsServer({ jetstream: true });
  const ops = await operator();
  // The streams exist before anything happens, so every event (policy_applied too) is kept.
  await ensureEventsStream(ops);
  await ensureAuditStream(ops);
  await applyPolicy(ops, policy(["claims", "auditor"]), { by: "restart-test" });
  const applied = await applyPolicy(ops, policy(["claims"]), { by: "restart-test" });

  await servePayments();
  const claims = await as("claims");
  const auditor = await as("auditor");
  assert.equal(claims.policy.inForce?.revision, applied.revision);
  const outcomes: CallOutcome<string>[] = [];
  const paid = await calls(claims, "pay", 50, 5);
  assert.ok(paid.every((r) => r.ok && r.value === "paid for claims"), "the allowed caller is served");
  const denied = [...await calls(auditor, "pay", 2), ...await calls(await as("auditor", true), "pay", 2)];
  assert.ok(denied.every((r) => r.code === "FORBIDDEN"), "the caller the policy left out is denied, by its own mesh and by the service");
  // Failures open the breaker (circuit_open); after its reset a good call closes it (circuit_close).
  const broken = await calls(claims, "broken", BREAKER.failureThreshold + 1);
  assert.deepEqual(broken.map((r) => r.code), [...Array(BREAKER.failureThreshold).fill("UNAVAILABLE"), "CIRCUIT_OPEN"]);
  await sleep(BREAKER.resetTimeoutMs + 100);
  const recovered = await calls(claims, "pay", 5);
  assert.ok(recovered.every((r) => r.ok), "the breaker closed again");
  outcomes.push(...paid, ...denied, ...broken, ...recovered);
  await closeAll();

  const ops1 = await operator();
  const auditBefore = await storedMessages(ops1, AUDIT_STREAM);
  const eventsBefore = await storedMessages(ops1, EVENTS_STREAM);
  const handledBefore = handled.length;
  assert.deepEqual(auditedRequestIds(auditBefore).sort(), [...handled].sort(), "one audit record per call whose handler ran");
  const typesBefore = new Set(eventsBefore.map(eventType));
  for (const t of ["policy_applied", "instance_started", "instance_stopped", "circuit_open", "circuit_half_open", "circuit_close"]) {
    assert.ok(typesBefore.has(t), `a ${t} event was stored (${[...typesBefore].join(", ")})`);
  }
  await closeAll();

  // The whole mesh is down; the server is killed by PID and started on the same store dir and port.
  const port = server.port;
  await server.stop("SIGKILL");
  await server.restart();
  assert.equal(server.port, port);

  const ops2 = await operator();
  assert.equal((await getPolicy(ops2))?.revision, applied.revision, "the policy in the store is the one applied last");
  assert.deepEqual(await storedMessages(ops2, AUDIT_STREAM), auditBefore, "every audit record from before, unchanged and in order");
  assert.deepEqual(await storedMessages(ops2, EVENTS_STREAM), eventsBefore, "every event from before, unchanged and in order");

  await servePayments();
  const claimsAgain = await as("claims");
  const auditorAgain = await as("auditor");
  assert.equal(claimsAgain.policy.inForce?.revision, applied.revision, "the restarted caller follows the stored policy");
  const stillDenied = [...await calls(auditorAgain, "pay", 2), ...await calls(await as("auditor", true), "pay", 2)];
  assert.ok(stillDenied.every((r) => r.code === "FORBIDDEN"), "the stored policy still denies the caller it left out, at the caller and at the service");
  const fresh = await calls(claimsAgain, "pay", 20, 5);
  assert.ok(fresh.every((r) => r.ok && r.value === "paid for claims"), "new calls work");
  outcomes.push(...stillDenied, ...fresh);
  await closeAll();

  const ops3 = await operator();
  const auditAfter = await storedMessages(ops3, AUDIT_STREAM);
  assert.deepEqual(auditAfter.slice(0, auditBefore.length), auditBefore, "the old records are still first");
  assert.deepEqual(auditedRequestIds(auditAfter).sort(), [...handled].sort(), "the new calls were audited too, once each");
  const eventsAfter = await storedMessages(ops3, EVENTS_STREAM);
  assert.deepEqual(eventsAfter.slice(0, eventsBefore.length), eventsBefore);
  await closeAll();

  console.log(figure("restart", outcomes, {
    extras: [
      `before: ${handledBefore} handled/${auditBefore.length} audit/${eventsBefore.length} events`,
      `after restart: policy rev ${applied.revision} in force (auditor still FORBIDDEN)`,
      `${auditBefore.length}/${auditBefore.length} audit and ${eventsBefore.length}/${eventsBefore.length} events kept`,
      `${fresh.length} new calls ok (${auditAfter.length - auditBefore.length} new audit, ${eventsAfter.length - eventsBefore.length} new events)`,
    ],
  }));
});
