// The svc.trace message format: records of one endpoint share a header and an origins
// list; anything malformed is counted on decode, never thrown.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeTraceBatch, encodeTraceBatch, type TraceEvent } from "../src/trace/event.ts";
import { decodeBody, encodeBody } from "../src/wire.ts";
import { traceRecord } from "../../../test/helpers/trace-record.ts";

const record = (over: Partial<TraceEvent> = {}): TraceEvent =>
  traceRecord({ time: 1_700_000_000_000, service: "payments", endpoint: "reimburse", version: "2.1.0", instance: "i1", requestId: "abc.r1", latencyMs: 1.25, rate: 0.5, ...over });

test("records round-trip; each answering instance is listed once; calls nobody answered have no origin", () => {
  const records = [
    record(),
    record({ requestId: "abc.r2", instance: "i2", version: "2.2.0" }),
    record({ requestId: "abc.r3" }),
    record({ requestId: "abc.r4", instance: "", version: "", status: "NO_RESPONDERS", attempts: 0 }),
  ];
  const bytes = encodeTraceBatch(records);
  assert.deepEqual(decodeTraceBatch(bytes), { events: records, malformed: 0 });
  const raw = decodeBody(bytes) as { origins: unknown[]; calls: unknown[][] };
  assert.deepEqual(raw.origins, [["i1", "2.1.0"], ["i2", "2.2.0"]]);
  assert.deepEqual(raw.calls.map((c) => c[1]), [0, 1, 0, -1]);
});

test("one message holds one caller's records for one endpoint at one rate", () => {
  assert.throws(() => encodeTraceBatch([record(), record({ endpoint: "other" })]), /must share/);
  assert.throws(() => encodeTraceBatch([record(), record({ rate: 1 })]), /must share/);
  assert.throws(() => encodeTraceBatch([]), /at least one/);
});

test("malformed messages and calls are counted, good calls beside them kept", () => {
  const header = { v: 1, caller: "claims", service: "payments", endpoint: "reimburse", rate: 1, origins: [["i1", "1.0.0"]] };
  const good = [1, 0, "r1", "t", "s", 2, "ok", 1];
  const { events, malformed } = decodeTraceBatch(encodeBody({ ...header, calls: [good, [1, 5, "r2", "t", "s", 2, "ok", 1], ["x"], [1, -1, "r3", "t", "s", -2, "ok", 1], null] }));
  assert.equal(malformed, 4, "origin out of range, wrong arity, negative latency, not an array");
  assert.deepEqual(events.map((e) => [e.requestId, e.instance, e.version]), [["r1", "i1", "1.0.0"]]);
  for (const body of [new Uint8Array([0xc1]), encodeBody([record()]), encodeBody({ ...header, v: 2, calls: [good] }), encodeBody({ ...header, service: "", calls: [good] })]) {
    assert.deepEqual(decodeTraceBatch(body), { events: [], malformed: 1 });
  }
});

test("a batch is encoded call by call as it fills (past its first buffers) and decodes as the plain message would", () => {
  const records = Array.from({ length: 1200 }, (_, i) => record({ requestId: `abc.r${i}`, instance: `i${i % 3}`, latencyMs: i / 7, status: i % 10 === 0 ? "TIMEOUT" : "ok" }));
  const bytes = encodeTraceBatch(records);
  assert.deepEqual(decodeTraceBatch(bytes), { events: records, malformed: 0 });
  const raw = decodeBody(bytes) as Record<string, unknown>;
  assert.deepEqual(Object.keys(raw), ["v", "caller", "service", "endpoint", "rate", "origins", "calls"]);
  assert.equal((raw.calls as unknown[]).length, 1200);
});
