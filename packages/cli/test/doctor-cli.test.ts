// `svcmesh doctor` as a child process against real nats-servers (one with JetStream
// and services started in-process, one without JetStream, a 3-node cluster): a healthy
// deployment is all ok; each defect gives its line and the exit code. Run `pnpm build` first.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type JetStreamManager, type NatsConnection, nanos } from "nats";
import { connect, type Mesh, newIdentity } from "svcmesh";
import { AUDIT_STREAM, EVENTS_STREAM, minAuditWindowMs, POLICY_BUCKET, POLICY_KEY } from "svcmesh/internal";
import { startCluster } from "../../../test/helpers/cluster.ts";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { filtersOverlap, meshSubjectsIn } from "../dist/doctor/subjects.js";
import { lines, runCli } from "./run-cli.ts";

interface Finding {
  check: string;
  status: "ok" | "info" | "warn" | "error" | "skipped";
  message: string;
  hint: string | null;
}

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let mesh: Mesh;
let dir: string;

const CLAIMS = newIdentity().publicKey;
const PAYMENTS = newIdentity().publicKey;

/** Every running service registered and ruled; the policy names only running services. */
const HEALTHY = `version: 1
identities:
  claims:   { key: ${CLAIMS} }
  payments: { key: ${PAYMENTS} }
services:
  payments:
    allow: [claims]
  claims:
    allow: []
`;

const payments = (rps: number, maxConcurrent: number) => ({
  name: "payments",
  version: "2.1.0",
  rateLimits: { claims: { rps, burst: 2 * rps } },
  endpoints: { reimburse: { maxConcurrent, handler: () => ({ ok: true }) } },
});

async function doctor(url: string, ...args: string[]): Promise<{ code: number | null; findings: Finding[]; stderr: string }> {
  const r = await runCli(["--json", "doctor", "--wait", "500", ...args], { env: { NATS_URL: url } });
  assert.equal(lines(r.stdout).length, 1, r.stdout + r.stderr);
  return { code: r.code, findings: JSON.parse(r.stdout) as Finding[], stderr: r.stderr };
}

function find(findings: readonly Finding[], check: string): Finding {
  const f = findings.find((x) => x.check === check);
  assert.ok(f, `no ${check} line in ${JSON.stringify(findings, null, 1)}`);
  return f;
}

/** The findings that are not ok, as "status check". */
const notOk = (findings: readonly Finding[]) => findings.filter((f) => f.status !== "ok").map((f) => `${f.status} ${f.check}`);

async function apply(text: string): Promise<void> {
  const file = join(dir, `policy-${Date.now()}.yaml`);
  writeFileSync(file, text);
  const r = await runCli(["apply", file], { env: { NATS_URL: server.url } });
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "svcmesh-doctor-cli-"));
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url });
  jsm = await nc.jetstreamManager();
  await apply(HEALTHY); // creates SVC_EVENTS and SVC_AUDIT, as operators do
  mesh = await connect({ servers: server.url, name: "host" });
  await mesh.serve(payments(50, 64));
  await mesh.serve(payments(50, 64));
  await mesh.serve({ name: "claims", version: "1.0.0", endpoints: { file: { handler: () => ({ ok: true }) } } });
});

after(async () => {
  await mesh?.close();
  await nc?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("svcmesh doctor", () => {
  test("a healthy deployment: every check ok, exit 0; text is one line per check and a summary", async () => {
    const { code, findings, stderr } = await doctor(server.url);
    assert.equal(code, 0, stderr);
    assert.deepEqual(notOk(findings), []);
    assert.deepEqual(findings.map((f) => f.check), [
      "server", "jetstream",
      "stream SVC_EVENTS", "SVC_EVENTS replicas",
      "stream SVC_AUDIT", "SVC_AUDIT duplicate window", "SVC_AUDIT replicas",
      "other streams", "policy", "services", "limits", "policy services", "rules", "identities",
    ]);
    assert.match(find(findings, "server").message, /^nats-server 2\.\d+\.\d+, not clustered$/);
    assert.match(find(findings, "policy").message, /^revision \d+, sha256 [0-9a-f]{64}: 2 identities, rules for 2 services$/);
    assert.equal(find(findings, "services").message, "2 services running (3 instances): claims, payments");

    const text = await runCli(["doctor", "--wait", "500"], { env: { NATS_URL: server.url } });
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stderr, "");
    const out = lines(text.stdout);
    assert.equal(out.length, findings.length + 1);
    for (const l of out.slice(0, -1)) assert.match(l, /^ok {5}\S/);
    assert.equal(out.at(-1), `${findings.length} checks: ${findings.length} ok, 0 warnings, 0 errors`);
    assert.ok(out.includes("ok     stream SVC_EVENTS: captures exactly svc.events.>"), text.stdout);
  });

  test("--json: an array of {check, status, message, hint}; hint null unless there is something to do", async () => {
    await mesh.close(); // no services: nothing else changes
    mesh = await connect({ servers: server.url, name: "host" });
    let findings: Finding[];
    try {
      findings = (await doctor(server.url)).findings;
    } finally {
      await mesh.serve(payments(50, 64));
      await mesh.serve(payments(50, 64));
      await mesh.serve({ name: "claims", version: "1.0.0", endpoints: { file: { handler: () => ({ ok: true }) } } });
    }
    assert.ok(findings.length > 5);
    for (const f of findings) {
      assert.deepEqual(Object.keys(f).sort(), ["check", "hint", "message", "status"]);
      assert.ok(["ok", "info", "warn", "error", "skipped"].includes(f.status), f.status);
      assert.equal(typeof f.check, "string");
      assert.equal(typeof f.message, "string");
      assert.equal(f.hint === null, f.status === "ok" || f.status === "skipped" || f.status === "info", JSON.stringify(f));
    }
    // The services the policy names are not running: a warning each.
    assert.deepEqual(notOk(findings), ["info services", "skipped limits", "warn policy service claims", "warn policy service payments"]);
    assert.match(find(findings, "policy service payments").hint!, /start payments, or take services\.payments out of the policy/);
  });

  test("SVC_EVENTS with an extra subject on a service's requests: error, exit 1, stderr names the check", async () => {
    const info = await jsm.streams.info(EVENTS_STREAM);
    await jsm.streams.update(EVENTS_STREAM, { ...info.config, subjects: ["svc.events.>", "svc.payments.>"] });
    try {
      const { code, findings, stderr } = await doctor(server.url);
      assert.equal(code, 1);
      assert.deepEqual(notOk(findings), ["error stream SVC_EVENTS"]);
      const f = find(findings, "stream SVC_EVENTS");
      assert.match(f.message, /^captures svc\.payments\.> besides svc\.events\.>: it captures request subjects \(svc\.<service>\.<lane>\.<endpoint>\): it stores calls and answers each caller with a JetStream ack/);
      assert.equal(f.hint, "nats stream edit SVC_EVENTS --subjects 'svc.events.>' (the library's subjects only)");
      assert.deepEqual(JSON.parse(stderr), { error: { code: "FAILED", message: "doctor: 1 check failed: stream SVC_EVENTS (error)" } });
      const text = await runCli(["doctor", "--wait", "500"], { env: { NATS_URL: server.url } });
      assert.equal(text.code, 1);
      assert.equal(text.stderr, "svcmesh: doctor: 1 check failed: stream SVC_EVENTS (error)\n");
      assert.ok(lines(text.stdout).some((l) => l.startsWith("error  stream SVC_EVENTS: captures svc.payments.> besides svc.events.>: ") && l.includes(" → nats stream edit SVC_EVENTS")), text.stdout);
    } finally {
      await jsm.streams.update(EVENTS_STREAM, info.config);
    }
  });

  test("another stream on svc.payments.> is an error; one on svc.trace.> a warning; one elsewhere is fine", async () => {
    await jsm.streams.add({ name: "ORDERS", subjects: ["orders.>", "svc.payments.>"] });
    await jsm.streams.add({ name: "REPLIES", subjects: ["_INBOX_claims.>"] });
    await jsm.streams.add({ name: "TRACES", subjects: ["svc.trace.payments.*"] });
    await jsm.streams.add({ name: "OTHER", subjects: ["other.>"] });
    try {
      const { code, findings } = await doctor(server.url);
      assert.equal(code, 1);
      assert.deepEqual(notOk(findings), ["error stream ORDERS", "error stream REPLIES", "warn stream TRACES"]);
      assert.match(find(findings, "stream REPLIES").message, /^captures _INBOX_claims\.>: it stores replies .*every call's result/);
      assert.match(find(findings, "stream ORDERS").message, /^captures svc\.payments\.>: it captures request subjects .*answers each caller with a JetStream ack/);
      assert.match(find(findings, "stream ORDERS").hint!, /nats stream rm ORDERS/);
      assert.equal(find(findings, "stream TRACES").message, "captures svc.trace.payments.*: it stores trace records (svc.trace.>), one per call");
    } finally {
      for (const s of ["ORDERS", "REPLIES", "TRACES", "OTHER"]) await jsm.streams.delete(s);
    }
    const { findings } = await doctor(server.url);
    assert.equal(find(findings, "other streams").message, "none of the 1 other stream captures mesh subjects"); // the policy bucket's
  });

  test("SVC_AUDIT's duplicate window: the library's rule (re-send horizon + margin) decides; shorter is an error", async () => {
    const info = await jsm.streams.info(AUDIT_STREAM);
    const need = minAuditWindowMs();
    try {
      await jsm.streams.update(AUDIT_STREAM, { ...info.config, duplicate_window: nanos(need) });
      const enough = await doctor(server.url);
      assert.equal(enough.code, 0, enough.stderr);
      assert.equal(find(enough.findings, "SVC_AUDIT duplicate window").message, "10m5s, at least the 10m5s audit writers need (their default re-send horizon and a margin)");
      await jsm.streams.update(AUDIT_STREAM, { ...info.config, duplicate_window: nanos(need - 1000) });
      const short = await doctor(server.url);
      assert.equal(short.code, 1);
      assert.deepEqual(notOk(short.findings), ["error SVC_AUDIT duplicate window"]);
      const f = find(short.findings, "SVC_AUDIT duplicate window");
      assert.match(f.message, /^10m4s, shorter than the 10m5s audit writers need .*stored twice/);
      assert.equal(f.hint, "nats stream edit SVC_AUDIT --dupe-window 20m (the library's default)");
    } finally {
      await jsm.streams.update(AUDIT_STREAM, info.config);
    }
  });

  test("a missing mesh stream is a warning (apply creates it), its other checks skipped; another stream on its subjects is an error", async () => {
    const info = await jsm.streams.info(AUDIT_STREAM);
    await jsm.streams.delete(AUDIT_STREAM);
    try {
      const { code, findings } = await doctor(server.url);
      assert.equal(code, 0);
      assert.deepEqual(notOk(findings), ["warn stream SVC_AUDIT", "skipped SVC_AUDIT duplicate window", "skipped SVC_AUDIT replicas"]);
      assert.match(find(findings, "stream SVC_AUDIT").hint!, /^`svcmesh apply <policy file>` creates it/);
      assert.equal(find(findings, "SVC_AUDIT replicas").message, "SVC_AUDIT does not exist");

      // Audit records kept by a stream of another name: SVC_AUDIT cannot even be made.
      await jsm.streams.add({ name: "AUDIT_COPY", subjects: ["svc.audit.>"] });
      const copy = await doctor(server.url);
      assert.equal(copy.code, 1);
      assert.equal(find(copy.findings, "stream AUDIT_COPY").message,
        "captures svc.audit.>: it stores audit records (svc.audit.>), which belong in SVC_AUDIT (the server refuses a stream overlapping another, so SVC_AUDIT cannot be created while it does)");
    } finally {
      await jsm.streams.delete("AUDIT_COPY").catch(() => undefined);
      await jsm.streams.add(info.config);
    }
  });

  test("no policy applied: a warning; exit 0, or 1 with --fail-on warn; a value written without apply that does not parse: error", async () => {
    const kv = await nc.jetstream().views.kv(POLICY_BUCKET, { bindOnly: true });
    const good = (await kv.get(POLICY_KEY))!.revision;
    try {
      await kv.delete(POLICY_KEY);
      const none = await doctor(server.url);
      assert.equal(none.code, 0, none.stderr);
      const f = find(none.findings, "policy");
      assert.equal(f.status, "warn");
      assert.match(f.message, /^none applied \(removed at revision \d+\): the mesh is open, every caller may call every service$/);
      assert.deepEqual(notOk(none.findings), ["warn policy", "skipped policy services", "skipped identities"]);
      const strict = await doctor(server.url, "--fail-on", "warn");
      assert.equal(strict.code, 1);
      assert.equal(JSON.parse(strict.stderr).error.message, "doctor: 1 check failed: policy (warn)");

      await apply(HEALTHY);
      const inForce = (await kv.get(POLICY_KEY))!.revision;
      const garbage = await kv.put(POLICY_KEY, new TextEncoder().encode("version: 1\nservices: { payments: { allow: claims } }\n"));
      const bad = await doctor(server.url);
      assert.equal(bad.code, 1);
      const p = find(bad.findings, "policy");
      assert.equal(p.status, "error");
      assert.match(p.message, new RegExp(`^the latest value in svcmesh_policies \\(revision ${garbage}\\) is not a valid policy \\(line 2:\\d+: services\\.payments\\.allow: .*\\), so every instance ignores it: revision ${inForce} stays in force$`));
    } finally {
      await apply(HEALTHY);
    }
    assert.ok(good > 0);
  });

  test("instances with different limits: rate limits per major, bulkheads per version, a warning naming them; the policy's limits cover it", async () => {
    const odd = await mesh.serve(payments(10, 8));
    try {
      const { code, findings } = await doctor(server.url, "--fail-on", "warn");
      assert.equal(code, 1);
      assert.deepEqual(notOk(findings), ["warn rate limits payments v2", "warn bulkheads payments@2.1.0"]);
      const rates = find(findings, "rate limits payments v2");
      assert.match(rates.message, /^its 3 instances \(2\.1\.0\) publish different rate limits \(.*\): each enforces its share \(1\/3\) of its own, so payments as a whole enforces none of them$/);
      const caps = find(findings, "bulkheads payments@2.1.0");
      assert.match(caps.message, /^its 3 instances cap concurrent calls differently: reimburse \(.*\)$/);
      for (const part of [`${odd.id}: claims 10/s burst 20`, ": claims 50/s burst 100"]) assert.ok(rates.message.includes(part), `${part} in ${rates.message}`);
      for (const part of [`${odd.id}: 8`, ": 64"]) assert.ok(caps.message.includes(part), `${part} in ${caps.message}`);
      assert.equal(find(findings, "services").message, "2 services running (4 instances): claims, payments");

      // What the policy sets overrides code in every instance: no longer a problem.
      await apply(HEALTHY.replace("    allow: [claims]\n", "    allow: [claims]\n    rateLimits: { claims: { rps: 50 } }\n    endpoints: { reimburse: { maxConcurrent: 64 } }\n"));
      const covered = await doctor(server.url, "--fail-on", "warn");
      assert.equal(covered.code, 0, covered.stderr);
      assert.deepEqual(notOk(covered.findings), ["info rate limits payments v2", "info bulkheads payments@2.1.0"]);
      assert.match(find(covered.findings, "bulkheads payments@2.1.0").message, /^its instances differ in code \(reimburse .*\), but the policy's maxConcurrent holds in all of them$/);
    } finally {
      await odd.stop();
      await apply(HEALTHY);
    }
  });

  test("a canary of the same major with other rate limits: the limiter shares them over the major, so a warning", async () => {
    const canary = await mesh.serve({ ...payments(10, 64), version: "2.2.0" });
    try {
      const { findings } = await doctor(server.url);
      assert.deepEqual(notOk(findings), ["warn rate limits payments v2"]);
      assert.match(find(findings, "rate limits payments v2").message, /^its 3 instances \(2\.1\.0, 2\.2\.0\) publish different rate limits/);
    } finally {
      await canary.stop();
    }
    const { findings } = await doctor(server.url);
    assert.equal(find(findings, "limits").message, "instances agree on rate limits (per major version) and bulkheads (per version)");
  });

  test("a running service with no registered identity: error; with no rule while the policy has allow lists: warn, or info under defaults.allow", async () => {
    const ledger = await mesh.serve({ name: "ledger", version: "1.0.0", endpoints: { post: { handler: () => ({ ok: true }) } } });
    try {
      const { code, findings, stderr } = await doctor(server.url);
      assert.equal(code, 1);
      assert.deepEqual(notOk(findings), ["warn rules for ledger", "error identity ledger"]);
      const id = find(findings, "identity ledger");
      assert.match(id.message, /^ledger is running, but the policy registers no identity ledger: its calls \(as ledger\) are refused UNAUTHENTICATED$/);
      assert.equal(id.hint, "svcmesh identity new ledger, give ledger the seed (SVCMESH_SEED), then svcmesh identity add ledger <its public key>");
      assert.match(find(findings, "rules for ledger").message, /no rule for ledger and no defaults\.allow: every caller may call it/);
      assert.equal(JSON.parse(stderr).error.message, "doctor: 1 check failed: identity ledger (error)");

      await apply(HEALTHY.replace("services:\n", "defaults:\n  allow: [claims]\nservices:\n"));
      const under = await doctor(server.url);
      assert.deepEqual(notOk(under.findings), ["info rules for ledger", "error identity ledger"]);
      assert.equal(find(under.findings, "rules for ledger").message, "the policy has no rule for ledger: defaults.allow decides who may call it (claims)");
    } finally {
      await ledger.stop();
      await apply(HEALTHY);
    }
  });

  test("no JetStream: the JetStream error, the checks that need it skipped, services still checked; exit 1", async () => {
    const plain = await startNatsServer();
    const host = await connect({ servers: plain.url, name: "host" });
    try {
      await host.serve(payments(50, 64));
      const { code, findings, stderr } = await doctor(plain.url);
      assert.equal(code, 1);
      assert.equal(JSON.parse(stderr).error.message, "doctor: 1 check failed: jetstream (error)");
      const js = find(findings, "jetstream");
      assert.equal(js.status, "error");
      assert.match(js.message, /^not enabled on the server .*: the policy, mesh events and audit records cannot be stored; the mesh still works, as an open one/);
      for (const check of ["stream SVC_EVENTS", "SVC_EVENTS replicas", "stream SVC_AUDIT", "SVC_AUDIT duplicate window", "SVC_AUDIT replicas", "other streams"]) {
        assert.deepEqual(find(findings, check), { check, status: "skipped", message: "JetStream is not enabled", hint: null });
      }
      assert.equal(find(findings, "policy").message, "JetStream is not enabled: no policy can be stored, so the mesh is open");
      assert.equal(find(findings, "services").status, "ok");
      assert.equal(find(findings, "limits").status, "ok");
      const text = await runCli(["doctor", "--wait", "500"], { env: { NATS_URL: plain.url } });
      assert.equal(text.code, 1);
      assert.ok(lines(text.stdout).includes("-      stream SVC_AUDIT: skipped: JetStream is not enabled"), text.stdout);
      assert.match(text.stdout, /^error  jetstream: not enabled on the server .* → enable JetStream in the server's config/m);
    } finally {
      await host.close();
      await plain.stop();
    }
  });

  test("--help describes the checks, the exit code and the JSON shape, with an example", async () => {
    const r = await runCli(["doctor", "--help"], { env: { NATS_URL: server.url } });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh doctor \[options\]/);
    for (const s of [/--wait <ms>/, /--fail-on <level>/, /--json/, /skipped: <why>/, /\[\{check, status, message, hint\}\]/, /Examples:\n {2}\$ svcmesh doctor\n/, /SVC_AUDIT's duplicate window/]) {
      assert.match(r.stdout, s);
    }
    const top = await runCli(["--help"], { env: { NATS_URL: server.url } });
    assert.match(top.stdout, /doctor \[options\] +check the deployment/);
  });
});

describe("which mesh subjects a stream's filter captures", () => {
  test("wildcards either side; svc.<reserved>.… is not a request subject", () => {
    assert.equal(filtersOverlap("svc.*.v2.>", "svc.payments.*.reimburse"), true);
    assert.equal(filtersOverlap("svc.payments", "svc.*.*.*"), false);
    assert.equal(filtersOverlap("svc.payments.v2.x.y", "svc.*.*.*"), false);
    assert.equal(filtersOverlap(">", "$SRV.>"), true);
    assert.deepEqual(meshSubjectsIn("svc.payments.>"), ["requests"]);
    assert.deepEqual(meshSubjectsIn("svc.*.v2.*"), ["requests", "traces", "events", "audit"]); // svc.events.v2.x is an event subject too
    assert.deepEqual(meshSubjectsIn("svc.trace.>"), ["traces"]);
    assert.deepEqual(meshSubjectsIn("*.events.>"), ["events"]);
    assert.deepEqual(meshSubjectsIn("$SRV.INFO.payments"), ["discovery"]);
    assert.deepEqual(meshSubjectsIn(">"), ["requests", "discovery", "traces", "events", "audit", "replies"]);
    assert.deepEqual(meshSubjectsIn("_INBOX.>"), ["replies"]);
    assert.deepEqual(meshSubjectsIn("_INBOX.*.*"), ["replies"]); // _INBOX.<nuid>.<token>: a caller's replies
    assert.ok(meshSubjectsIn("*.*.*").includes("replies"));
    assert.deepEqual(meshSubjectsIn("*.events.>"), ["events"]); // a literal second token is no nuid
    assert.deepEqual(meshSubjectsIn("_INBOX_claims.>"), ["replies"]);
    assert.deepEqual(meshSubjectsIn("_INBOX_claims"), []);
    assert.deepEqual(meshSubjectsIn("_INBOXES.>"), []);
    assert.deepEqual(meshSubjectsIn("orders.>"), []);
    assert.deepEqual(meshSubjectsIn("svc.payments"), []);
  });
});

describe("svcmesh doctor on a cluster", () => {
  test("1 replica on a cluster of 3 is a warning; 3 replicas are ok", async () => {
    const cluster = await startCluster();
    try {
      await cluster.jetStreamReady();
      const file = join(dir, "cluster-policy.yaml");
      writeFileSync(file, "version: 1\n");
      const applied = await runCli(["apply", file], { env: { NATS_URL: cluster.urls[0]! } });
      assert.equal(applied.code, 0, applied.stderr);
      const { code, findings } = await doctor(cluster.urls[0]!, "--fail-on", "warn");
      assert.equal(code, 1);
      assert.match(find(findings, "server").message, /^nats-server \S+ \(n1\), cluster mesh of 3 servers$/);
      assert.deepEqual(notOk(findings).filter((f) => f.includes("replicas")), ["warn SVC_EVENTS replicas", "warn SVC_AUDIT replicas"]);
      const f = find(findings, "SVC_AUDIT replicas");
      assert.equal(f.message, "1 replica on a cluster of 3: its messages are lost when the server holding them is lost");
      assert.equal(f.hint, "nats stream edit SVC_AUDIT --replicas 3");

      const c = await natsConnect({ servers: cluster.urls[0]! });
      try {
        const m = await c.jetstreamManager();
        for (const s of [EVENTS_STREAM, AUDIT_STREAM]) {
          const info = await m.streams.info(s);
          await m.streams.update(s, { ...info.config, num_replicas: 3 });
        }
      } finally {
        await c.close();
      }
      const after = await doctor(cluster.urls[0]!);
      assert.equal(find(after.findings, "SVC_AUDIT replicas").message, "3 replicas on a cluster of 3");
      assert.equal(find(after.findings, "SVC_EVENTS replicas").status, "ok");
    } finally {
      await cluster.stopAll();
    }
  });
});
