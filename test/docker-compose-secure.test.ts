// docker/docker-compose.secure.yml without a Docker engine (its shared topology is
// checked in docker-compose.test.ts): what makes it secure is checked statically, then
// the operator's setup (docker/secure/setup.mjs) runs into a temp dir and the same
// topology runs natively with what it made: nodes with the generated users, the
// policy-apply job, the services with their env files, the demo client; and what a
// client without credentials, a service with another one's seed, or a server without
// the route password (one that would join the cluster and read every message) gets.
// Needs `pnpm build` (setup.mjs and the commands run the packages' dist).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { after, describe, test } from "node:test";
import { connect as natsConnect } from "nats";
import { within } from "./helpers/child.ts";
import { pollJson } from "./helpers/cluster.ts";
import { freePort, natsServerBinary, sleep } from "./helpers/nats-server.ts";
import {
  assertStory, bindMounts, commandOf, type ComposeService, envFilesOf, envOf, exampleOf, nativeRun, nodeArgs, outputs, parseEnvFile, readCompose,
  root, type Running, serviceEnv, startNativeCluster, stopAll,
} from "./helpers/compose.ts";

const FILE = "docker-compose.secure.yml";
/** What compose gets from setup.mjs's cluster.env, for the static checks. */
const STATIC_VARS = { NATS_ROUTE_PASSWORD: "static-check" };
const file = readCompose(FILE, STATIC_VARS);
const composeText = readFileSync(join(root, "docker", FILE), "utf8");
const DEPLOY = "./secure/deploy/";

/** The mesh processes: example services and the demo client (not the operator's job). */
const meshProcesses = file.appServices.filter(([, s]) => exampleOf(s) !== undefined || commandOf(s).some((a) => a.endsWith("/client.js")));
const policyApply = file.appServices.find(([, s]) => commandOf(s).includes("apply"));
/** The identity a mesh process runs as: its example service, or demo-client. */
const identityOf = (s: ComposeService) => exampleOf(s) ?? "demo-client";

describe(`${FILE}: secured`, () => {
  test("every service and the demo client fail closed and get their seed from their own env file", () => {
    assert.deepEqual(meshProcesses.map(([n]) => n).sort(), ["auth", "claims", "demo-client", "payments-1", "payments-2"]);
    for (const [n, s] of meshProcesses) {
      assert.equal(envOf(s).SVCMESH_POLICY_REQUIRED, "1", `${n} SVCMESH_POLICY_REQUIRED`);
      assert.deepEqual(envFilesOf(s), [`${DEPLOY}${identityOf(s)}.env`], `${n} env_file`);
    }
  });

  test("no seed is written in the compose file", () => {
    assert.doesNotMatch(composeText, /\bS[UOAC][A-Z2-7]{50,}/, "an nkey seed");
    for (const [n, s] of file.services) assert.ok(!Object.hasOwn(envOf(s), "SVCMESH_SEED"), `${n} sets SVCMESH_SEED inline`);
  });

  test("every NATS node loads the generated authorization config", () => {
    const base = readFileSync(join(root, "docker/secure/nats-server.conf"), "utf8");
    const include = /^\s*include\s+"?([^"\s]+)"?/m.exec(base)?.[1];
    assert.ok(include, "docker/secure/nats-server.conf includes a file");
    for (const n of file.nodeNames) {
      const config = file.flag(n, "config");
      assert.ok(config, `${n} starts with --config`);
      const [, spec] = file.natsNodes.find(([name]) => name === n)!;
      const mounts = new Map(bindMounts(spec).map((m) => [m.target, m.source]));
      assert.equal(mounts.get(config), "./secure/nats-server.conf", `${n}: the config is docker/secure/nats-server.conf`);
      // nats-server resolves an include against the including file's directory.
      assert.equal(mounts.get(posix.join(posix.dirname(config), include)), `${DEPLOY}authorization.conf`, `${n}: the include is the generated config`);
      assert.ok(bindMounts(spec).every((m) => m.source.startsWith(DEPLOY) ? m.source.endsWith(".conf") : true), `${n} gets no seed file`);
    }
  });

  test("routes between the nodes present the password from setup.mjs's cluster.env; without it compose refuses the file", () => {
    for (const n of file.nodeNames) {
      const urls = [file.flag(n, "cluster")!, ...(file.flag(n, "routes") ?? "").split(",")].map((u) => new URL(u));
      assert.equal(urls.length, 3, `${n}: its listen URL and two routes`);
      for (const u of urls) assert.deepEqual([u.username, u.password], ["route", STATIC_VARS.NATS_ROUTE_PASSWORD], `${n}: ${u.host}`);
    }
    assert.throws(() => readCompose(FILE), /NATS_ROUTE_PASSWORD is missing a value: run docker\/secure\/setup\.mjs and pass --env-file docker\/secure\/deploy\/cluster\.env/);
  });

  test("a one-shot policy-apply job applies the generated policy with the operator's seed", () => {
    assert.ok(policyApply, "a service running svcmesh apply");
    const [, s] = policyApply;
    const cmd = commandOf(s);
    assert.deepEqual(cmd.slice(0, 3), ["node", "packages/cli/dist/main.js", "apply"]);
    const mounts = new Map(bindMounts(s).map((m) => [m.target, m.source]));
    assert.equal(mounts.get(cmd[3]!), `${DEPLOY}policies.yaml`);
    assert.deepEqual(envFilesOf(s), [`${DEPLOY}operator.env`]);
    assert.equal(s.restart, "on-failure", "retried until the cluster takes it");
  });

  test("docker/secure/deploy/ is ignored by git", () => {
    const r = spawnSync("git", ["check-ignore", "-q", "docker/secure/deploy/claims.env"], { cwd: root });
    assert.equal(r.status, 0, "git check-ignore docker/secure/deploy/claims.env");
  });
});

// ---- the same topology, natively, with what setup.mjs makes ----

const native = nativeRun();
after(() => native.cleanup());

test("secure topology: setup, broker auth, policy applied by the operator, the story succeeds; no credentials or a wrong seed are refused", async () => {
  const run = native.start;
  const dir = native.tempDir("svcmesh-compose-secure-");
  const deploy = join(dir, "deploy");
  const setup = spawnSync(process.execPath, ["docker/secure/setup.mjs", "--out", deploy], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(setup.status, 0, setup.stderr);
  assert.doesNotMatch(setup.stdout + setup.stderr, /\bSU[A-Z2-7]{56}\b/, "setup prints no seed");
  const seedOf = (f: string) => parseEnvFile(readFileSync(join(deploy, `${f}.env`), "utf8")).SVCMESH_SEED;
  for (const f of ["auth", "claims", "payments", "demo-client", "operator"]) {
    assert.equal(statSync(join(deploy, `${f}.env`)).mode & 0o777, 0o600, `${f}.env is private`);
    assert.match(seedOf(f) ?? "", /^SU[A-Z2-7]{56}$/, `${f}.env has a seed`);
  }
  assert.equal(statSync(join(deploy, "cluster.env")).mode & 0o777, 0o600, "cluster.env is private");
  const vars = parseEnvFile(readFileSync(join(deploy, "cluster.env"), "utf8"));
  assert.match(vars.NATS_ROUTE_PASSWORD ?? "", /^[A-Za-z0-9_-]{32}$/, "cluster.env has a route password");
  const live = readCompose(FILE, vars); // as `docker compose --env-file <deploy>/cluster.env` reads it
  const hostPath = (source: string) => (source.startsWith(DEPLOY) ? join(deploy, source.slice(DEPLOY.length)) : join(root, "docker", source));
  for (const [n, s] of file.services) for (const f of envFilesOf(s)) assert.ok(existsSync(hostPath(f)), `${n}: setup made ${f}`);

  const cluster = await startNativeCluster(live, dir, (cmd, args) => run(cmd, args, process.env), hostPath);

  // A server that reaches the nodes' cluster ports without the route password (or with
  // another) does not join: it would receive every message, whatever the users may see.
  for (const [label, auth] of [["no password", ""], ["a wrong password", "route:wrong@"]] as const) {
    const [rogueCluster, rogueHttp] = [await freePort(), await freePort()];
    const routes = file.nodeNames.map((n) => cluster.mapUrl(`nats://${n}:${file.clusterPort(n)}`, "cluster").replace("//", `//${auth}`)).join(",");
    const rogue = run(natsServerBinary(), ["--addr", "127.0.0.1", "-p", String(await freePort()), "-m", String(rogueHttp), "--cluster_name", "svcmesh",
      "--cluster", `nats://127.0.0.1:${rogueCluster}`, "--routes", routes], process.env);
    await pollJson(`http://127.0.0.1:${rogueHttp}/varz`, () => true, 10_000);
    await sleep(1_500); // time for it to try every route (it retries each second)
    const { num_routes } = await pollJson(`http://127.0.0.1:${rogueHttp}/routez`, () => true, 5_000);
    assert.equal(num_routes, 0, `a server with ${label} joined: ${rogue.output()}`);
    for (const n of file.nodeNames) {
      const body = await pollJson(`http://127.0.0.1:${cluster.monitorPort(n)}/routez`, () => true, 5_000);
      assert.equal(body.num_routes, 2, `${n} routes to its two peers only`);
    }
    assert.match(rogue.output(), /Authorization Violation/, label);
    rogue.proc.kill("SIGKILL");
    await rogue.exit;
  }
  const env = (s: ComposeService) => serviceEnv(s, cluster, hostPath);

  // No credentials: every node refuses the connection.
  for (const n of file.nodeNames) {
    const url = cluster.mapUrl(`nats://${n}:${file.clientPort(n)}`, "client");
    await assert.rejects(natsConnect({ servers: url, reconnect: false, timeout: 2_000 }), (e: Error) => {
      assert.match(`${(e as { code?: string }).code} ${e.message}`, /AUTHORIZATION_VIOLATION|Authorization Violation/i, n);
      return true;
    }, `${n} accepts a client without credentials`);
  }

  // The services start first, as compose may start them: they wait for the policy.
  const servers = meshProcesses.filter(([, s]) => exampleOf(s) !== undefined);
  const running: Running[] = servers.map(([n, s]) => ({ name: n, started: run(process.execPath, nodeArgs(s), env(s)) }));

  // The operator's one-shot job, with the generated policy where compose mounts it.
  const [, applySpec] = policyApply!;
  const mounted = new Map(bindMounts(applySpec).map((m) => [m.target, hostPath(m.source)]));
  const apply = run(process.execPath, nodeArgs(applySpec).map((a) => mounted.get(a) ?? a), env(applySpec));
  assert.equal(await within(20_000, "policy-apply", apply.exit), 0, apply.output());

  const [clientName, clientSpec] = meshProcesses.find(([, s]) => exampleOf(s) === undefined)!;
  const client = run(process.execPath, nodeArgs(clientSpec), env(clientSpec));
  const code = await within(60_000, clientName, client.exit);
  assertStory(code, client.output(), () => `${clientName} output:\n${client.output()}\n${outputs(running)}`);

  // auth started with claims' seed: the broker lets claims' user subscribe to claims'
  // inbox only, so the process cannot read the policy, and with the policy required it
  // does not start: FORBIDDEN at the first refusal, not retried for the compose file's
  // SVCMESH_CONNECT_WAIT_MS (waiting does not mend a refusal).
  const [, authSpec] = servers.find(([, s]) => exampleOf(s) === "auth")!;
  const impostor = run(process.execPath, nodeArgs(authSpec), { ...env(authSpec), SVCMESH_SEED: seedOf("claims") });
  assert.equal(await within(15_000, "auth with claims' seed", impostor.exit), 1, impostor.output());
  assert.match(impostor.output(), /Permissions Violation for Subscription to \\?"_INBOX_auth\./, impostor.output());
  assert.match(impostor.output(), /auth could not start: .*policy\.required is set and the NATS server's permissions do not let this connection read the policy bucket .*its own seed/, impostor.output());
  assert.doesNotMatch(impostor.output(), /cannot connect to the mesh yet; retrying/, "not retried");

  await stopAll(running, cluster);
});
