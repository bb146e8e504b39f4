// The built demo (dist/demo.js) run as a user runs it, against nats-servers this file
// starts itself. Build first: `pnpm build`.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { freePort, type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";

const DEMO = fileURLToPath(new URL("../dist/demo.js", import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the demo with exactly these extra variables (NATS_URL is removed unless given). */
function runDemo(env: Record<string, string>, timeoutMs = 60_000): Promise<Run> {
  const base = { ...process.env };
  delete base.NATS_URL;
  delete base.SVCMESH_DEMO_PORT_CHECK;
  delete base.NATS_SERVER_BIN;
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [DEMO], { env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`demo did not exit within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    proc.on("error", reject);
    proc.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function show(r: Run): string {
  return `exit ${r.code ?? r.signal}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The pids of the service processes, from the demo's "started ..." lines. */
function childPids(stdout: string): Map<string, number> {
  const pids = new Map<string, number>();
  for (const m of stdout.matchAll(/^started (\S+)\s+\S+@\S+\s+pid (\d+)\s+instance (\S+)$/gm)) pids.set(m[1]!, Number(m[2]));
  return pids;
}

/** Checks everything a successful run must show. */
function assertStoryShown(r: Run): void {
  assert.equal(r.code, 0, show(r));
  const pids = childPids(r.stdout);
  assert.deepEqual([...pids.keys()].sort(), ["auth", "claims", "payments-1", "payments-2"], show(r));

  // One line per scripted claim; the refused ones show their error code.
  const row = (id: string) => r.stdout.split("\n").find((l) => l.trimStart().startsWith(id + " ")) ?? assert.fail(`no line for ${id}\n${show(r)}`);
  for (const id of ["C-1001", "C-1002", "C-1004", "C-1005", "C-1007", "C-1009"]) {
    assert.match(row(id), /payments-[12]\s+paid to .+, txn T-C-\d+$/, `${id} should be paid\n${show(r)}`);
  }
  assert.match(row("C-1003"), /\bFORBIDDEN: /, show(r));
  assert.match(row("C-1006"), /\bFORBIDDEN: /, show(r));
  assert.match(row("C-1008"), /\bBAD_REQUEST: .*usd/, show(r));

  // Per-instance counts: both payments instances took a share.
  for (const label of ["payments-1", "payments-2"]) {
    const m = new RegExp(`^\\s+${label}\\s+instance \\S+\\s+served (\\d+) claims?$`, "m").exec(r.stdout);
    assert.ok(m, `no count line for ${label}\n${show(r)}`);
    assert.ok(Number(m[1]) > 0, `${label} served nothing\n${show(r)}`);
  }
  assert.match(r.stdout, /all stopped cleanly; done\.$/m, show(r));
  for (const [label, pid] of pids) assert.equal(alive(pid), false, `${label} (pid ${pid}) still runs after the demo exited`);
}

let server: NatsServer;

before(async () => {
  server = await startNatsServer();
});

after(async () => {
  await server?.stop();
});

test("with NATS_URL: runs the story on that server and stops its children", async () => {
  const r = await runDemo({ NATS_URL: server.url });
  assertStoryShown(r);
  assert.match(r.stdout, new RegExp(`^NATS: ${server.url}\\s+\\(from NATS_URL\\)$`, "m"), show(r));
  assert.ok(await accepts(server.port), "the demo must not stop a server it did not start");
});

test("NATS_URL may list several servers, comma-separated", async () => {
  const r = await runDemo({ NATS_URL: `${server.url},${server.url}` });
  assertStoryShown(r);
});

test("without NATS_URL, a server listening on the probed port is used and left running", async () => {
  const r = await runDemo({ SVCMESH_DEMO_PORT_CHECK: String(server.port) });
  assertStoryShown(r);
  assert.match(r.stdout, new RegExp(`^NATS: nats://127\\.0\\.0\\.1:${server.port}\\s+\\(a NATS server already listening there\\)$`, "m"), show(r));
  assert.ok(await accepts(server.port), "the demo must not stop a server it did not start");
});

test("without NATS_URL and nothing on the probed port, it starts its own nats-server and stops it", async () => {
  const unused = await freePort();
  const r = await runDemo({ SVCMESH_DEMO_PORT_CHECK: String(unused) });
  assertStoryShown(r);
  const m = /^NATS: nats:\/\/127\.0\.0\.1:(\d+)\s+\(a nats-server started by the demo \(pid (\d+)\), stopped at the end\)$/m.exec(r.stdout);
  assert.ok(m, show(r));
  assert.match(r.stdout, /and the nats-server$/m, show(r));
  assert.equal(alive(Number(m[2])), false, "the nats-server the demo started still runs");
  assert.equal(await accepts(Number(m[1])), false, "something still listens where the demo's nats-server was");
});

test("a probed port where something that is not NATS listens is not mistaken for a server", async () => {
  const { createServer } = await import("node:net");
  const impostor = createServer((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
  await new Promise<void>((resolve) => impostor.listen(0, "127.0.0.1", resolve));
  try {
    const port = (impostor.address() as { port: number }).port;
    const r = await runDemo({ SVCMESH_DEMO_PORT_CHECK: String(port) });
    assertStoryShown(r);
    assert.match(r.stdout, /started by the demo/, show(r));
  } finally {
    impostor.close();
  }
});

test("when nats-server is needed but missing, it says how to install it and exits non-zero", async () => {
  const dir = mkdtempSync(join(tmpdir(), "svcmesh-demo-test-"));
  try {
    const r = await runDemo({ SVCMESH_DEMO_PORT_CHECK: "off", NATS_SERVER_BIN: join(dir, "nats-server") }, 20_000);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /apt-get install -y nats-server/, show(r));
    assert.doesNotMatch(r.stdout, /^started /m, show(r));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an unreachable NATS_URL fails fast with a clear message and starts no services", async () => {
  const unused = await freePort();
  const started = Date.now();
  const r = await runDemo({ NATS_URL: `nats://127.0.0.1:${unused}` }, 30_000);
  assert.notEqual(r.code, 0, show(r));
  assert.match(r.stderr, new RegExp(`demo failed: .*127\\.0\\.0\\.1:${unused}`), show(r));
  assert.doesNotMatch(r.stdout, /^started /m, show(r));
  assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
});
