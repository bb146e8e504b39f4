// SVCMESH_POLICY_REQUIRED is for services: the CLI, which follows no policy (it connects
// with policy.watch false), keeps working in an environment that sets it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, type Mesh } from "svcmesh";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { runCli } from "./run-cli.ts";

let server: NatsServer;
let mesh: Mesh;

before(async () => {
  server = await startNatsServer();
  mesh = await connect({ servers: server.url, name: "host", logLevel: "silent" });
  await mesh.serve({ name: "payments", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
});

after(async () => {
  await mesh?.close();
  await server?.stop();
});

test("with SVCMESH_POLICY_REQUIRED=1 in the environment, info and call still work", async () => {
  const env = { NATS_URL: server.url, SVCMESH_POLICY_REQUIRED: "1" };
  const info = await runCli(["--json", "info", "payments", "--wait", "1000"], { env });
  assert.equal(info.code, 0, info.stderr);
  assert.equal((JSON.parse(info.stdout) as { service: string }).service, "payments");
  const call = await runCli(["call", "payments", "ping"], { env });
  assert.equal(call.code, 0, call.stderr);
  assert.match(call.stdout, /pong/);
});
