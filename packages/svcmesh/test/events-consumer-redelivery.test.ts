// A durable events consumer whose handler is slower than the ack wait: the events pulled
// with the one being handled must not expire while they wait their turn, and a copy of
// an event already handled must not run the handler again.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { EVENTS_STREAM, type EventDelivery, MeshEvents } from "svcmesh/internal";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { recordingLogger, waitFor } from "../../../test/helpers/wait.ts";

type Logger = ConstructorParameters<typeof MeshEvents>[1];
const recording = (into: string[]) => recordingLogger<Logger>(into);


let server: NatsServer;
let nc: NatsConnection;
const opened: MeshEvents[] = [];

function events(source: string, logged: string[] = []): MeshEvents {
  const e = new MeshEvents(nc, recording(logged), source);
  opened.push(e);
  return e;
}

async function consumerState(durable: string): Promise<{ ackPending: number; redelivered: number; pending: number }> {
  const i = await (await nc.jetstreamManager()).consumers.info(EVENTS_STREAM, durable);
  return { ackPending: i.num_ack_pending, redelivered: i.num_redelivered, pending: i.num_pending };
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url });
});

after(async () => {
  await Promise.allSettled(opened.map((e) => e.close()));
  await nc?.drain();
  await server?.stop();
});

test("events pulled with a slow handler's wait their turn without expiring: each is handled once", async () => {
  const pub = events("claims");
  for (let n = 0; n < 3; n++) pub.emit({ type: "circuit_open", caller: "claims", target: "slow-keep.v1", stats: { n } });
  await pub.close();
  const wf = events("workflow");
  const runs: { n: number; d: EventDelivery }[] = [];
  // Each takes longer than the ack wait: the second waits 1.3 s, the third 2.6 s.
  const c = await wf.consume({ durable: "wf-keep", services: ["slow-keep"], ackWaitMs: 1_000 }, async (e, d) => {
    runs.push({ n: (e as { stats?: { n: number } }).stats!.n, d });
    await sleep(1_300);
  });
  await waitFor("three handled events", () => runs.length >= 3);
  await sleep(1_800); // a redelivered copy would be handled by now
  await c.stop();
  assert.deepEqual(runs.map((r) => [r.n, r.d.deliveryCount]), [[0, 1], [1, 1], [2, 1]]);
  assert.deepEqual(await consumerState("wf-keep"), { ackPending: 0, redelivered: 0, pending: 0 });
});

test("a copy of an event whose handler already succeeded is acknowledged without running the handler again", async () => {
  const pub = events("claims");
  pub.emit({ type: "circuit_open", caller: "claims", target: "blocked.v1" });
  await pub.close();
  const logged: string[] = [];
  const wf = events("workflow", logged);
  const runs: EventDelivery[] = [];
  const c = await wf.consume({ durable: "wf-copy", services: ["blocked"], ackWaitMs: 1_000 }, (_e, d) => {
    runs.push(d);
    // A handler that blocks the event loop: no keep-alive can go out, the ack wait runs
    // out and the server sends the event again while this first run is still going.
    const until = Date.now() + 2_500;
    while (Date.now() < until) {
      // busy on purpose, bounded by time
    }
  });
  await waitFor("the copy", () => logged.some((m) => /already handled/.test(m)) || runs.length > 1);
  await sleep(300);
  await c.stop();
  assert.deepEqual(runs.map((d) => d.deliveryCount), [1]);
  assert.deepEqual(await consumerState("wf-copy"), { ackPending: 0, redelivered: 0, pending: 0 });
});
