// The process entry point (dist/service.js <name>) as a container or the demo runs it.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { connect, type Mesh } from "svcmesh";
import { freePort, type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import type { Reimbursement } from "../src/payments.ts";

const SERVICE = fileURLToPath(new URL("../dist/service.js", import.meta.url));

interface Proc {
  proc: ChildProcessWithoutNullStreams;
  lines: () => Record<string, unknown>[];
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], env: Record<string, string>): Proc {
  const proc = spawn(process.execPath, [SERVICE, ...args], { env: { ...process.env, SVCMESH_LOG_LEVEL: "info", ...env } });
  let out = "";
  proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on("close", (code, signal) => resolve({ code, signal })));
  const lines = () => out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { proc, lines, output: () => out, exit };
}

async function until<T>(what: string, p: Proc, find: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = find();
    if (v !== undefined) return v;
    if (p.proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`${what}: not seen within ${timeoutMs} ms\n${p.output()}`);
}

async function exitOf(p: Proc, timeoutMs = 15_000) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      p.proc.kill("SIGKILL");
      reject(new Error(`no exit within ${timeoutMs} ms\n${p.output()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([p.exit, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let server: NatsServer;
let client: Mesh;

before(async () => {
  server = await startNatsServer();
  client = await connect({ servers: server.url, name: "test-client" });
});

after(async () => {
  await client?.close();
  await server?.stop();
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`payments: logs ready with its instance id, serves, and stops gracefully on ${signal}`, async () => {
    // A comma-separated NATS_URL (a cluster list), as in docker-compose.
    const p = start(["payments"], { NATS_URL: `${server.url},${server.url}` });
    try {
      const ready = await until("ready line", p, () => p.lines().find((l) => typeof l.msg === "string" && l.msg.startsWith("ready: payments@2.")));
      assert.equal(ready.service, "payments");
      assert.equal(typeof ready.instance, "string");
      const out = await client.call<Reimbursement>("payments@^2", "reimburse", { claimId: "C-7", usd: 5 }, { timeoutMs: 3_000 });
      assert.equal(out.servedBy, ready.instance);
      assert.equal(out.pid, p.proc.pid);

      p.proc.kill(signal);
      const { code, signal: killedBy } = await exitOf(p);
      assert.equal(code, 0, p.output());
      assert.equal(killedBy, null);
      assert.ok(p.lines().some((l) => l.msg === "stopped"), p.output());
      // It left the mesh: nobody serves payments any more.
      const gone = await client.call("payments@^2", "reimburse", { claimId: "C-8", usd: 5 }, { timeoutMs: 3_000 }).then(
        () => "answered",
        (e: { code?: string }) => e.code,
      );
      assert.equal(gone, "NO_RESPONDERS");
    } finally {
      p.proc.kill("SIGKILL");
    }
  });
}

test("an unknown service name prints the usage and exits 2", async () => {
  const p = start(["billing"], { NATS_URL: server.url });
  const { code } = await exitOf(p);
  assert.equal(code, 2);
  assert.match(p.output(), /usage: node service\.js <auth\|claims\|payments>/);
  assert.match(p.output(), /unknown service "billing"/);
});

test("gives up with exit 1 when NATS stays unreachable for SVCMESH_CONNECT_WAIT_MS", async () => {
  const port = await freePort();
  const p = start(["auth"], { NATS_URL: `nats://127.0.0.1:${port}`, SVCMESH_CONNECT_WAIT_MS: "1500" });
  const { code } = await exitOf(p);
  assert.equal(code, 1, p.output());
  assert.ok(p.lines().some((l) => typeof l.msg === "string" && l.msg.startsWith("auth could not start")), p.output());
});

test("a setting that waiting cannot mend (here a bad SVCMESH_POLICY_REQUIRED) exits 1 at once, not after SVCMESH_CONNECT_WAIT_MS", async () => {
  const started = Date.now();
  const p = start(["auth"], { NATS_URL: server.url, SVCMESH_CONNECT_WAIT_MS: "60000", SVCMESH_POLICY_REQUIRED: "maybe" });
  const { code } = await exitOf(p);
  assert.equal(code, 1, p.output());
  assert.ok(Date.now() - started < 15_000, `exited after ${Date.now() - started} ms`);
  assert.match(p.output(), /SVCMESH_POLICY_REQUIRED/);
  assert.ok(!p.lines().some((l) => l.msg === "cannot connect to the mesh yet; retrying"), "no retry");
});

test("waits for a NATS server that comes up after it starts", async () => {
  const port = await freePort();
  const p = start(["auth"], { NATS_URL: `nats://127.0.0.1:${port}`, SVCMESH_CONNECT_WAIT_MS: "20000" });
  let late: NatsServer | undefined;
  try {
    await until("a retry warning", p, () => p.lines().find((l) => l.msg === "cannot connect to the mesh yet; retrying" && l.code === "UNAVAILABLE"));
    late = await startNatsServer({ port });
    await until("ready line", p, () => p.lines().find((l) => typeof l.msg === "string" && l.msg.startsWith("ready: auth@1.")));
    p.proc.kill("SIGTERM");
    assert.equal((await exitOf(p)).code, 0, p.output());
  } finally {
    p.proc.kill("SIGKILL");
    await late?.stop();
  }
});
