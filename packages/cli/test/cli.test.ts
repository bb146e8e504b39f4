// The built `svcmesh` command run as a child process against a real nats-server and
// services started in-process with the library. Run `pnpm build` first.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { connect, type Mesh, type ServiceHandle } from "svcmesh";
import { z } from "zod";
import { freePort, type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { CLI_MAIN, type CliOptions, jsonError, runCli } from "./run-cli.ts";


interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const cli = (args: string[], opts: CliOptions = {}) => runCli(args, { ...opts, env: { NATS_URL: server.url, ...opts.env } });

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.length > 0);
}

let server: NatsServer;
let emptyServer: NatsServer;
const meshes: Mesh[] = [];
const ids: Record<string, string[]> = { "payments@2.1.0": [], "payments@1.0.0": [], "auth@1.0.0": [] };

const Claim = z.object({ claimId: z.string(), usd: z.number().positive() });

async function serve(m: Mesh, name: string, version: string, endpoints: Parameters<Mesh["serve"]>[0]["endpoints"]): Promise<ServiceHandle> {
  const h = await m.serve({ name, version, endpoints });
  ids[`${name}@${version}`]!.push(h.id);
  return h;
}

before(async () => {
  server = await startNatsServer();
  emptyServer = await startNatsServer();
  const a = await connect({ servers: server.url, name: "host-a" });
  const b = await connect({ servers: server.url, name: "host-b" });
  meshes.push(a, b);
  const payments2 = {
    reimburse: {
      input: Claim,
      output: z.object({ txn: z.string(), usd: z.number(), caller: z.string() }),
      handler: (req: z.infer<typeof Claim>, ctx: { caller: string }) => ({ txn: `T-${req.claimId}`, usd: req.usd, caller: ctx.caller }),
    },
    refund: { handler: () => ({ ok: true }) },
  };
  await serve(a, "payments", "2.1.0", payments2);
  await serve(b, "payments", "2.1.0", payments2);
  await serve(b, "payments", "1.0.0", { reimburse: { handler: () => ({ legacy: true }) } });
  await serve(a, "auth", "1.0.0", {
    verify: { handler: (req: { token?: string }) => ({ valid: req?.token === "good" }) },
    slow: { handler: () => new Promise((r) => setTimeout(() => r({ late: true }), 1_500)) },
  });
  // A plain NATS services-framework service: not part of the mesh, so never listed.
  const legacy = await a.nc.services.add({ name: "legacy", version: "0.1.0" });
  legacy.addEndpoint("ping", { handler: (_err, msg) => msg.respond() });
});

after(async () => {
  await Promise.allSettled(meshes.map((m) => m.close()));
  await Promise.allSettled([server?.stop(), emptyServer?.stop()]);
});

test("the CLI has been built", () => {
  assert.ok(existsSync(CLI_MAIN), `${CLI_MAIN} is missing: run pnpm build first`);
});

describe("--help", () => {
  test("the top level lists the commands and the global options", async () => {
    const r = await cli(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh/);
    assert.match(r.stdout, /^\s+ls\b/m);
    assert.match(r.stdout, /^\s+call\b/m);
    assert.match(r.stdout, /--server <url>/);
    assert.match(r.stdout, /NATS_URL/);
    assert.match(r.stdout, /--json/);
  });

  test("every command has its own help, with the global options", async () => {
    for (const [cmd, own] of [["ls", /--wait <ms>/], ["call", /--timeout <ms>/]] as const) {
      const r = await cli([cmd, "--help"]);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`Usage: svcmesh ${cmd}`));
      assert.match(r.stdout, own);
      assert.match(r.stdout, /--server <url>/);
    }
  });

  test("help and output to a reader that went away (| head): exit 0, nothing on stderr", async () => {
    for (const args of [["call", "--help"], ["help", "call"], ["--help"], ["ls"]]) {
      const r = await cli(args, { closeStdout: true });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, "", args.join(" "));
    }
  });

  test("an unknown command is a one-line usage error with exit 2", async () => {
    const r = await cli(["lss"]);
    assert.equal(r.code, 2);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.equal(r.stderr, "svcmesh: unknown command 'lss' (Did you mean ls?)\n");
  });
});

describe("svcmesh ls", () => {
  test("prints one row per service and version with instance counts and endpoints", async () => {
    const r = await cli(["ls"]);
    assert.equal(r.code, 0, r.stderr);
    const rows = lines(r.stdout).map((l) => l.split(/\s{2,}/));
    assert.deepEqual(rows, [
      ["SERVICE", "VERSION", "INSTANCES", "ENDPOINTS"],
      ["auth", "1.0.0", "1", "slow, verify"],
      ["payments", "2.1.0", "2", "refund, reimburse"],
      ["payments", "1.0.0", "1", "reimburse"],
    ]);
    assert.doesNotMatch(r.stdout, /legacy/);
  });

  test("--json gives services with instance ids and endpoint names", async () => {
    const r = await cli(["ls", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [
      { service: "auth", version: "1.0.0", instances: ids["auth@1.0.0"], endpoints: ["slow", "verify"] },
      { service: "payments", version: "2.1.0", instances: [...ids["payments@2.1.0"]!].sort(), endpoints: ["refund", "reimburse"] },
      { service: "payments", version: "1.0.0", instances: ids["payments@1.0.0"], endpoints: ["reimburse"] },
    ]);
    assert.equal(ids["payments@2.1.0"]!.length, 2);
  });

  test("--server wins over NATS_URL", async () => {
    const r = await cli(["--json", "ls", "-s", server.url], { env: { NATS_URL: emptyServer.url } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 3);
  });

  test("an empty mesh says so and succeeds", async () => {
    const r = await cli(["ls"], { env: { NATS_URL: emptyServer.url } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "no services running\n");
    const j = await cli(["ls", "--json"], { env: { NATS_URL: emptyServer.url } });
    assert.equal(j.code, 0, j.stderr);
    assert.deepEqual(JSON.parse(j.stdout), []);
  });
});

describe("svcmesh call", () => {
  test("prints the reply as pretty JSON", async () => {
    const r = await cli(["call", "payments@^2", "reimburse", '{"claimId":"C1","usd":40}']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, JSON.stringify({ txn: "T-C1", usd: 40, caller: "svcmesh-cli" }, null, 2) + "\n");
  });

  test("--json prints compact JSON, --as names the caller", async () => {
    const r = await cli(["--json", "call", "payments@2.1.0", "reimburse", '{"claimId":"C2","usd":5}', "--as", "ops-bob"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{"txn":"T-C2","usd":5,"caller":"ops-bob"}\n');
  });

  test("reads the payload from stdin when it is -", async () => {
    const r = await cli(["call", "auth", "verify", "-"], { stdin: '{"token":"good"}\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { valid: true });
  });

  test("a version range nobody runs is NOT_FOUND, with the running versions", async () => {
    const r = await cli(["call", "payments@^9", "reimburse", '{"claimId":"C1","usd":40}']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const [first, details, ...rest] = lines(r.stderr);
    assert.match(first!, /^svcmesh: NOT_FOUND: no running version of payments matches \^9/);
    assert.match(details!, /^details: /);
    assert.deepEqual((JSON.parse(details!.slice("details: ".length)) as { running: string[] }).running, ["2.1.0", "1.0.0"]);
    assert.deepEqual(rest, []);
  });

  test("schema-invalid input is BAD_REQUEST with the zod issues as details", async () => {
    const r = await cli(["call", "payments@^2", "reimburse", '{"claimId":"C1","usd":-3}']);
    assert.equal(r.code, 1);
    const [first, details] = lines(r.stderr);
    assert.match(first!, /^svcmesh: BAD_REQUEST: invalid input for payments\.reimburse/);
    const parsed = JSON.parse(details!.slice("details: ".length)) as { issues: { path: unknown[] }[] };
    assert.deepEqual(parsed.issues.map((i) => i.path), [["usd"]]);
  });

  test("--json reports the error as one JSON line", async () => {
    const r = await cli(["call", "--json", "payments@^2", "reimburse", '{"claimId":7,"usd":1}']);
    assert.equal(r.code, 1);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    const err = (JSON.parse(r.stderr) as { error: { code: string; details: { issues: { path: unknown[] }[] } } }).error;
    assert.equal(err.code, "BAD_REQUEST");
    assert.deepEqual(err.details.issues.map((i) => i.path), [["claimId"]]);
  });

  test("a service nobody runs is NO_RESPONDERS", async () => {
    const r = await cli(["call", "nobody", "ping", "{}"]);
    assert.equal(r.code, 1);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: NO_RESPONDERS: /);
  });

  test("--timeout bounds the call: TIMEOUT", async () => {
    const r = await cli(["call", "auth", "slow", "--timeout", "200"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^svcmesh: TIMEOUT: /);
  });

  test("a payload that is not JSON is a one-line usage error, exit 2", async () => {
    const r = await cli(["call", "payments@^2", "reimburse", "{claimId:C1}"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: payload is not valid JSON: /);
  });

  test("bad JSON on stdin and a malformed target are usage errors too", async () => {
    const s = await cli(["call", "auth", "verify", "-"], { stdin: "{nope" });
    assert.equal(s.code, 2);
    assert.match(s.stderr, /^svcmesh: payload on standard input is not valid JSON: /);
    const t = await cli(["call", "Payments@!!", "reimburse", "{}"]);
    assert.equal(t.code, 2);
    assert.equal(lines(t.stderr).length, 1, t.stderr);
    assert.match(t.stderr, /^svcmesh: invalid service name in target/);
  });

  test("--as is checked like other names: empty or with dots is a usage error naming --as, exit 2", async () => {
    for (const as of ["", "a.b", "ops.*"]) {
      const r = await cli(["call", "payments@^2", "reimburse", '{"claimId":"C1","usd":40}', "--as", as]);
      assert.equal(r.code, 2, JSON.stringify(as));
      assert.equal(r.stdout, "");
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`svcmesh: option '--as <name>' argument '${as}' is invalid. "${as}" is not a caller name.`), r.stderr);
    }
  });

  test("a non-number --timeout is a usage error", async () => {
    const r = await cli(["call", "auth", "verify", "{}", "--timeout", "soon"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^svcmesh: option '--timeout <ms>' argument 'soon' is invalid/);
  });
});

describe("--json failures: one JSON line with a code", () => {
  test("a bad command line is USAGE, exit 2, even when commander stops before --json or the command", async () => {
    for (const args of [["--json", "nonexistentcmd"], ["--json"], ["call", "--json"], ["call", "auth", "verify", "{bad json", "--json"], ["-s", ",", "ls", "--json"]]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stdout, "", args.join(" "));
      assert.equal(jsonError(r.stderr).code, "USAGE", args.join(" "));
    }
    assert.equal(jsonError((await cli(["--json", "nonexistentcmd"])).stderr).message, "unknown command 'nonexistentcmd'");
  });
});

describe("unreachable server", () => {
  test("ls and call fail fast with one line naming the server", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`; // free: nothing listens there
    for (const args of [["ls"], ["call", "payments", "reimburse", "{}"]]) {
      const r = await cli(args, { env: { NATS_URL: url } });
      assert.equal(r.code, 1, args.join(" "));
      assert.equal(r.stdout, "");
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`svcmesh: cannot connect to NATS at ${url}: `), r.stderr);
      assert.ok(r.ms < 5_000, `took ${r.ms} ms`);
    }
    const j = await cli(["ls", "--json"], { env: { NATS_URL: url } });
    assert.equal(j.code, 1);
    const err = jsonError(j.stderr);
    assert.equal(err.code, "UNAVAILABLE");
    assert.ok(err.message.startsWith(`cannot connect to NATS at ${url}: `), err.message);
  });

  test("a hung server (accepts, never answers): one line after the 2 s connect timeout, exit within about 3 s", async () => {
    const sockets: Socket[] = [];
    const hung = createServer((s) => sockets.push(s)).listen(0, "127.0.0.1");
    await new Promise((r) => hung.once("listening", r));
    const url = `nats://127.0.0.1:${(hung.address() as { port: number }).port}`;
    try {
      const r = await cli(["ls"], { env: { NATS_URL: url } });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `svcmesh: cannot connect to NATS at ${url}: TIMEOUT\n`);
      assert.ok(r.ms >= 2_000 && r.ms < 5_000, `took ${r.ms} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      hung.close();
    }
  });
});
