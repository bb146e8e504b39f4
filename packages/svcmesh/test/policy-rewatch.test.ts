// The policy watcher watches afresh after a reconnect. If the history of the policy key
// is slow to come back, its 2 s fallback must not guess "no policy" while one is in
// force (that would open the mesh, or with policy.required refuse every call). A real
// nats-server behind a TCP proxy that holds back the first delivered policy message
// after the reconnect for longer than the fallback.
import assert from "node:assert/strict";
import { type Server, type Socket, createServer, connect as tcpConnect } from "node:net";
import { after, before, test } from "node:test";
import { connect as natsConnect } from "nats";
import { applyPolicy, connect, type Mesh } from "svcmesh";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";

/** Forwards loopback TCP to `port`; can drop its clients and hold back server bytes once. */
class HoldingProxy {
  private readonly server: Server;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private armed: { pattern: Buffer; ms: number } | undefined;
  /** Set when a hold began (ms since the epoch). */
  heldAt: number | undefined;

  constructor(private readonly port: number) {
    this.server = createServer((client) => this.accept(client));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `nats://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  /** The next server bytes from `pattern` on are held back for `ms`, then sent in order. */
  holdOnce(pattern: string, ms: number): void {
    this.armed = { pattern: Buffer.from(pattern), ms };
  }

  dropClients(): void {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.dropClients();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const upstream = tcpConnect(this.port, "127.0.0.1");
    const pair = { client, upstream };
    this.pairs.add(pair);
    let held: Buffer[] | undefined;
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      if (held) return void held.push(d);
      const at = this.armed ? d.indexOf(this.armed.pattern) : -1;
      if (at < 0 || !this.armed) return void client.write(d);
      const { ms } = this.armed;
      this.armed = undefined;
      this.heldAt = Date.now();
      client.write(d.subarray(0, at));
      held = [d.subarray(at)];
      setTimeout(() => {
        for (const b of held!) client.write(b);
        held = undefined;
      }, ms);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }
}

let server: NatsServer;
let proxy: HoldingProxy;
let mesh: Mesh | undefined;

before(async () => {
  server = await startNatsServer({ jetstream: true });
  proxy = new HoldingProxy(server.port);
});

after(async () => {
  await mesh?.close();
  await proxy?.close();
  await server?.stop();
});

test("after a reconnect, a policy history held back past the 2 s fallback does not drop the policy in force", async () => {
  const operator = await natsConnect({ servers: server.url });
  const applied = await applyPolicy(operator, "version: 1\nservices:\n  payments:\n    allow: [\"*\"]\n", { by: "test" });
  await operator.close();
  const url = await proxy.listen();
  mesh = await connect({ servers: url, name: "claims", logLevel: "silent" });
  await waitFor("the policy to be read", () => mesh!.policy.inForce?.revision === applied.revision);
  const changes: (number | undefined)[] = [];
  mesh.policy.onChange((p) => changes.push(p?.revision));

  // The delivered policy message (not the stream info, whose JSON names the subject too).
  proxy.holdOnce("MSG $KV.svcmesh_policies.", 3_500);
  proxy.dropClients();
  await waitFor("the watcher's history to be held back", () => proxy.heldAt !== undefined, 10_000);
  await sleep(2_600 - (Date.now() - proxy.heldAt!)); // past the fallback, still held
  assert.equal(mesh.policy.inForce?.revision, applied.revision, "the policy in force while its history is held back");
  await sleep(1_500); // released
  assert.equal(mesh.policy.inForce?.revision, applied.revision);
  assert.deepEqual(changes.filter((r) => r !== applied.revision), [], `no change to "none": ${JSON.stringify(changes)}`);
});
