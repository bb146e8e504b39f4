// W3C traceparent parsing and the mesh's own ids and sampling decision.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent, sampledAt, traceHeaderLines, traceIdOf } from "../src/trace/context.ts";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

test("traceparent: valid headers parse, malformed and all-zero ones do not", () => {
  assert.deepEqual(parseTraceparent(VALID, "k=v"), { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: 1, state: "k=v" });
  assert.equal(formatTraceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1), VALID);
  for (const bad of [
    "", "garbage", VALID.toUpperCase(), VALID + "-extra", "ff" + VALID.slice(2),
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "x".repeat(600),
  ]) assert.equal(parseTraceparent(bad), undefined, bad);
  assert.equal(parseTraceparent("01" + VALID.slice(2) + "-future")?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "later versions may add fields");
  assert.equal(traceIdOf(VALID), "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(traceIdOf("00-NOT-HEX-AT-ALL-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "");
});

test("ids are hex, non-zero and different; header lines carry no CR/LF from tracestate", () => {
  const ids = new Set(Array.from({ length: 5000 }, () => newTraceId()));
  assert.equal(ids.size, 5000);
  for (const id of [...ids].slice(0, 50)) assert.match(id, /^[0-9a-f]{32}$/);
  assert.match(newSpanId(), /^[0-9a-f]{16}$/);
  assert.equal(traceHeaderLines("a".repeat(32), "b".repeat(16), 0, "x=1\r\nEvil: yes"), `traceparent: 00-${"a".repeat(32)}-${"b".repeat(16)}-00\r\ntracestate: x=1Evil: yes\r\n`);
});

test("sampling is decided by the trace id: the same for every hop, at about the rate", () => {
  const ids = Array.from({ length: 20_000 }, () => newTraceId());
  const kept = ids.filter((id) => sampledAt(id, 0.1)).length;
  assert.ok(kept > 1_600 && kept < 2_400, `kept ${kept} of 20000 at 0.1`);
  for (const id of ids.slice(0, 100)) assert.equal(sampledAt(id, 0.1), sampledAt(id, 0.1));
  assert.ok(ids.every((id) => sampledAt(id, 1)));
  assert.ok(!ids.some((id) => sampledAt(id, 0)));
});
