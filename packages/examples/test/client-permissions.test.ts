// The demo client (dist/client.js) behind a generated broker config that lets it look up
// and call only claims: it says it cannot look the other services up instead of
// waiting for them until a misleading timeout, and the story still runs through claims.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { natsAuthorizationConfig, newIdentity } from "svcmesh";
import { killAll, run as runIn, type Started, within } from "../../../test/helpers/child.ts";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";

const DIST = fileURLToPath(new URL("../dist/", import.meta.url));

const procs: ChildProcess[] = [];
let server: NatsServer | undefined;

after(async () => {
  killAll(procs);
  await server?.stop();
});

function run(script: string, args: string[], env: Record<string, string>): Started {
  return runIn(procs, process.execPath, [DIST + script, ...args], { ...process.env, SVCMESH_LOG_LEVEL: "warn", ...env });
}

test("a client the server's permissions let see only claims: says so for auth and payments, and its story still runs", async () => {
  const ids = { auth: newIdentity(), claims: newIdentity(), payments: newIdentity(), "demo-client": newIdentity() };
  server = await startNatsServer({
    extraConfig: natsAuthorizationConfig({
      services: {
        auth: { key: ids.auth.publicKey },
        payments: { key: ids.payments.publicKey },
        claims: { key: ids.claims.publicKey, calls: { auth: ["*"], payments: ["*"] } },
        "demo-client": { key: ids["demo-client"].publicKey, calls: { claims: ["*"] } },
      },
      eventsStream: null,
      auditStream: null,
      policyBucket: null,
    }),
  });
  // No JetStream and no policy bucket granted: the example services run without either.
  const env = (name: keyof typeof ids) => ({ NATS_URL: server!.url, SVCMESH_SEED: ids[name].seed, SVCMESH_DEMO_WAIT_MS: "20000" });
  const services = (["auth", "payments", "claims"] as const).map((name) => ({ name, started: run("service.js", [name], env(name)) }));
  const client = run("client.js", [], env("demo-client"));
  const code = await within(40_000, "demo client", client.exit);
  const report = () => `client:\n${client.output()}\n` + services.map((s) => `--- ${s.name}\n${s.started.output().slice(-2_000)}`).join("\n");
  assert.match(client.output(), /^cannot look up auth \(the NATS server's permissions do not allow it\); not waiting for it$/m, report());
  assert.match(client.output(), /^cannot look up payments \(the NATS server's permissions do not allow it\); not waiting for it$/m, report());
  assert.match(client.output(), /^found 1 instance\(s\) of claims$/m, report());
  assert.equal(code, 0, report());
  for (const s of services) s.started.proc.kill("SIGTERM");
  for (const s of services) assert.equal(await within(15_000, `${s.name} stopping`, s.started.exit), 0, report());
});
