// One instance's process is killed during a bounded load: later calls go to the others.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { connect, isMeshError, type Mesh } from "svcmesh";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const fixture = fileURLToPath(new URL("./fixtures/who-service.ts", import.meta.url));
let server: NatsServer;
let caller: Mesh;
const children: ChildProcess[] = [];

function startInstance(): Promise<{ child: ChildProcess; id: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", fixture, "victim", "1.0.0"], {
    env: { ...process.env, NATS_URL: server.url, SVCMESH_LOG_LEVEL: "silent" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("instance did not become ready in 15 s")), 15_000);
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ready (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, id: m[1]! });
      }
    });
    child.once("exit", (code) => reject(new Error(`instance exited early with ${code}`)));
  });
}

before(async () => {
  server = await startNatsServer();
  caller = await connect({ servers: server.url, name: "loss-caller" });
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await caller.close();
  await server.stop();
});

test("killing one of three instances mid-load: in-flight calls fail with a code, later calls go to the others", async () => {
  const instances = await Promise.all([startInstance(), startInstance(), startInstance()]);
  const victim = instances[0]!;
  const TOTAL = 1500;
  const CONCURRENCY = 8;
  const deadlineAt = Date.now() + 30_000;
  const results: { at: number; ok: boolean; id?: string; code?: string }[] = [];
  let killedAt = 0;
  let next = 0;

  const worker = async () => {
    while (next < TOTAL && Date.now() < deadlineAt) {
      const i = next++;
      if (i === 400) {
        victim.child.kill("SIGKILL");
        killedAt = Date.now();
      }
      try {
        const id = await caller.call<string>("victim", "who", undefined, { timeoutMs: 500 });
        results.push({ at: Date.now(), ok: true, id });
      } catch (e) {
        assert.ok(isMeshError(e), `a failure must be a MeshError, got ${String(e)}`);
        results.push({ at: Date.now(), ok: false, code: e.code });
      }
      await sleep(8); // paced, so the load spans the kill and the time after it
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));

  assert.equal(results.length, TOTAL, "every call settled within the bound");
  assert.ok(killedAt > 0);
  const before = results.filter((r) => r.at < killedAt);
  assert.ok(before.some((r) => r.id === victim.id), "the victim served calls before it was killed");
  // Replies already in flight when the process died can only time out.
  for (const r of results.filter((r) => !r.ok)) assert.equal(r.code, "TIMEOUT");
  const later = results.filter((r) => r.at > killedAt + 600);
  assert.ok(later.length >= 300, `enough calls after the kill (${later.length})`);
  assert.ok(later.every((r) => r.ok && r.id !== victim.id), "after the kill every call succeeds on a survivor");
  const survivors = new Set(later.map((r) => r.id));
  assert.equal(survivors.size, 2, "both survivors share the load");
});
