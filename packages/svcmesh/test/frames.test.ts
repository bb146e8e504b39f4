// Frames (frames.ts) on a real server: what a subscriber receives is the message
// nc.publish() would have sent, through nats.js's internals and through the fallback
// used when those are missing; and the checks nc.publish() makes still refuse.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, type Msg, type NatsConnection } from "nats";
import { FramePublisher, decodeBody, encodeBody, hpubFrame } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

after(async () => {
  await nc?.close();
  await server?.stop();
});

const head = new TextEncoder().encode("NATS/1.0\r\nMesh-Caller: clerk\r\nMesh-Deadline: ");

async function receive(publisher: FramePublisher, subject: string): Promise<Msg> {
  const sub = nc.subscribe(subject, { max: 1 });
  const got = (async () => {
    for await (const m of sub) return m;
    throw new Error("subscription ended without a message");
  })();
  publisher.publish(hpubFrame(subject, "_INBOX.frames.1", head, "99\r\nMesh-Request-Id: r1\r\n\r\n", encodeBody({ claimId: "C-1", usd: 12.5 })));
  return got;
}

for (const [name, make] of [
  ["through nats.js's protocol buffer", () => new FramePublisher(nc)],
  ["through nc.publish() when the internals are missing", () => new FramePublisher({ publish: nc.publish.bind(nc) } as unknown as NatsConnection)],
] as const) {
  test(`a frame arrives as the message it encodes, ${name}`, async () => {
    const outMsgs = nc.stats().outMsgs;
    const m = await receive(make(), `frames.${name.length}`);
    assert.equal(m.reply, "_INBOX.frames.1");
    assert.equal(m.headers?.get("Mesh-Caller"), "clerk");
    assert.equal(m.headers?.get("Mesh-Deadline"), "99");
    assert.equal(m.headers?.get("Mesh-Request-Id"), "r1");
    assert.deepEqual(decodeBody(m.data), { claimId: "C-1", usd: 12.5 });
    assert.equal(nc.stats().outMsgs, outMsgs + 1, "counted like nc.publish()");
  });
}

test("a frame over the server's max_payload is refused before it is sent, as nc.publish() refuses it", () => {
  const big = new Uint8Array(nc.info!.max_payload + 1);
  assert.throws(() => new FramePublisher(nc).publish(hpubFrame("frames.big", "", head, "1\r\n\r\n", big)), (e: { code?: string }) => e.code === "MAX_PAYLOAD_EXCEEDED");
});

test("a closed connection refuses frames", async () => {
  const other = await connect({ servers: server.url });
  const publisher = new FramePublisher(other);
  await other.close();
  assert.throws(() => publisher.publish(hpubFrame("frames.closed", "", head, "1\r\n\r\n", new Uint8Array(0))), (e: { code?: string }) => e.code === "CONNECTION_CLOSED");
});
