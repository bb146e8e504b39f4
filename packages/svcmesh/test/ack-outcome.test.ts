// Reading JetStream publish acks (jetstream/acked-publisher.ts): the plain acks of a
// stored message are read from the bytes, everything else through JSON.parse. Both
// must say the same for any ack; an error must never read as stored. The server's own
// acks are checked on a real server in audit.test.ts and events.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ackOutcome } from "svcmesh/internal";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** What the ack says, read only through JSON.parse (the reading before the byte path). */
function byJson(text: string): string {
  if (text.length === 0) return "retry";
  try {
    const ack = JSON.parse(text) as { error?: unknown; seq?: unknown; duplicate?: unknown };
    if (ack === null || typeof ack !== "object" || ack.error !== undefined || typeof ack.seq !== "number") return "retry";
    return ack.duplicate === true ? "duplicate" : "stored";
  } catch {
    return "retry";
  }
}

test("the acks nats-server 2.9 writes, as it writes them", () => {
  assert.equal(ackOutcome(bytes('{"stream":"SVC_AUDIT", "seq":1}')), "stored");
  assert.equal(ackOutcome(bytes('{"stream":"SVC_AUDIT", "seq":18446744073709551615}')), "stored");
  assert.equal(ackOutcome(bytes('{"stream":"SVC_AUDIT", "seq":1,"duplicate": true}')), "duplicate");
  assert.equal(ackOutcome(bytes('{"stream":"S", "domain":"hub", "seq":7,"duplicate": true}')), "duplicate");
  assert.equal(ackOutcome(bytes('{"error":{"code":503,"err_code":10077,"description":"no stream leader"},"stream":"S","seq":0}')), "retry");
  assert.equal(ackOutcome(bytes('{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"},"stream":"S","seq":0}')), "retry");
  assert.equal(ackOutcome(new Uint8Array(0)), "retry", "a status-only reply (503 no responders)");
});

test("look-alikes of a plain ack are read as JSON would read them", () => {
  const cases = [
    '{"stream":"S","seq":7,"duplicate":false}',
    '{"stream":"S","seq":7,"duplicate":"true"}',
    '{"stream":"S","seq":"7"}',
    '{"stream":"S"}',
    '{"stream":"S","seq":7,"error":{"code":500}}',
    '{"stream":"S","seq":7',
    '{"stream":"S","seq":7}x',
    '{"stream":"S","seq":-1}',
    '{"stream":"S","seq":7,"duplicate": trueish}',
    '{"stream":"S", "seq":007}',
    '{"stream":"S", "seq":0}',
    '{"stream":"S", "seq":1.5}',
    '{"stream":"S", "seq":1e3}',
    '{"stream":"S\\"x", "seq":1}',
    '{"stream":"S", "seq":1,"duplicate":true,"x":1}',
    '{"stream":"S","domain":"d","seq":1}',
    '{"stream":"S","seq":1} ',
    '{"stream":"S",  "seq":1}',
    "not json",
  ];
  for (const text of cases) assert.equal(ackOutcome(bytes(text)), byJson(text), text);
});

test("any ack: the byte reading agrees with JSON.parse (property)", () => {
  const key = fc.constantFrom("stream", "seq", "duplicate", "domain", "error", "x");
  const value = fc.oneof(fc.nat(), fc.integer(), fc.boolean(), fc.string({ maxLength: 12 }), fc.constant(null), fc.record({ code: fc.nat(600) }));
  const ack = fc.array(fc.tuple(key, value), { maxLength: 5 }).map((fields) => `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`);
  // The server's spacing (", " and ": ") as well as none, and truncated or padded texts.
  const text = fc.oneof(
    ack,
    ack.map((t) => t.replaceAll(",", ", ").replaceAll(":", ": ")),
    fc.tuple(ack, fc.nat(40)).map(([t, n]) => t.slice(0, n)),
    fc
      .tuple(
        fc.constantFrom('{"stream":"S", "seq":', '{"stream":"S", "domain":"d", "seq":', '{"stream":"S", "seq":1,"duplicate": ', '{"stream":"'),
        fc.string({ unit: fc.constantFrom("0", "1", "9", ".", "-", "e", "}", ",", " ", "t", "r", "u", '"', "\\", "x", ":"), maxLength: 10 }),
      )
      .map(([a, b]) => a + b),
  );
  fc.assert(
    fc.property(text, (t) => ackOutcome(bytes(t)) === byJson(t)),
    { numRuns: 3000 },
  );
});
