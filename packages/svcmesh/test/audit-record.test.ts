// The audit record encoder (audit/record.ts): an endpoint's shared fields encoded once,
// each record's own fields after them under one map header. What it writes must read
// back as the record, exactly as the whole record encoded in one go does.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { AuditRecordEncoder, decodeAuditRecord, decodeBody, encodeBody } from "svcmesh/internal";

const text = fc.string({ unit: "binary", maxLength: 40 });
const constants = fc.record({ service: fc.string({ minLength: 1, maxLength: 20 }), version: text, instance: text, endpoint: text });
const call = fc.record(
  {
    time: fc.nat(),
    caller: text,
    requestId: text,
    traceId: text,
    status: fc.constantFrom("ok", "HANDLER_ERROR", "TIMEOUT"),
    durationMs: fc.double({ min: 0, max: 1e6, noNaN: true }),
    policy: fc.stringMatching(/^[0-9]{1,6}$/),
  },
  { requiredKeys: ["time", "caller", "requestId", "traceId", "status", "durationMs"] },
);

test("a record encoded in two parts reads back as the whole record", () => {
  fc.assert(
    fc.property(constants, fc.array(call, { minLength: 1, maxLength: 3 }), (shared, calls) => {
      const encoder = new AuditRecordEncoder(shared);
      for (const c of calls) {
        const bytes = encoder.encode(c);
        const record = { ...shared, ...c };
        assert.deepEqual(decodeBody(bytes), decodeBody(encodeBody(record)));
        const decoded = decodeAuditRecord(bytes);
        assert.ok(decoded.ok, decoded.ok ? "" : decoded.reason);
        assert.deepEqual(decoded.record, record);
      }
    }),
    { numRuns: 500 },
  );
});
