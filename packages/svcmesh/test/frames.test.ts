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

/** The bytes nc.publish() sends for the same message: the HPUB line as UTF-8, the header tail one byte per character. */
function expectedBytes(subject: string, reply: string, tail: string, body: Uint8Array): Buffer {
  const hlen = head.length + tail.length;
  const total = hlen + body.length;
  const line = reply ? `HPUB ${subject} ${reply} ${hlen} ${total}\r\n` : `HPUB ${subject} ${hlen} ${total}\r\n`;
  return Buffer.concat([Buffer.from(line, "utf8"), head, Buffer.from(tail, "latin1"), body, Buffer.from("\r\n")]);
}

test("a frame's bytes are the HPUB message, with and without a reply, at sizes across digit boundaries, and with subjects outside ASCII", () => {
  const cases: [string, string, string, Uint8Array][] = [
    ["svc.payments.v2.reimburse", "_INBOX.abc.123", "99\r\nMesh-Request-Id: r1\r\n\r\n", encodeBody({ claimId: "C-1" })],
    ["svc.payments.v2.reimburse", "", "1\r\n\r\n", new Uint8Array(0)],
    ["a", "b", "", new Uint8Array(9)],
    ["a", "", "", new Uint8Array(10_000 - head.length)], // total 10,000: five digits
    ["svc.paiements.é", "_INBOX.ü.7", "5\r\n\r\n", new Uint8Array([1, 2, 3])],
    ["svc.x", "_INBOX.日本.1", "5\r\n\r\n", new Uint8Array([4])],
  ];
  for (const [subject, reply, tail, body] of cases) {
    const frame = hpubFrame(subject, reply, head, tail, body);
    const expected = expectedBytes(subject, reply, tail, body);
    assert.deepEqual(Buffer.from(frame.bytes), expected, `${subject} ${reply}`);
    assert.equal(frame.bodyEnd, expected.length - 2);
    assert.equal(frame.bodyStart - frame.headerStart, head.length + tail.length);
  }
});

test("a frame to a subject outside ASCII, with a reply outside ASCII, arrives intact", async () => {
  const subject = "frames.paiements.é";
  const sub = nc.subscribe(subject, { max: 1 });
  const got = (async () => {
    for await (const m of sub) return m;
    throw new Error("subscription ended without a message");
  })();
  new FramePublisher(nc).publish(hpubFrame(subject, "_INBOX.ü.1", head, "99\r\n\r\n", encodeBody({ ok: true })));
  const m = await got;
  assert.equal(m.subject, subject);
  assert.equal(m.reply, "_INBOX.ü.1");
  assert.equal(m.headers?.get("Mesh-Caller"), "clerk");
  assert.deepEqual(decodeBody(m.data), { ok: true });
});
