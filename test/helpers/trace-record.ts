// One svc.trace record with every field filled, for tests that publish or encode records
// by hand; each test overrides what it is about.
import type { TraceEvent } from "svcmesh";

export function traceRecord(over: Partial<TraceEvent> = {}): TraceEvent {
  return {
    time: Date.now(),
    caller: "claims",
    service: "ledger",
    endpoint: "post",
    version: "1.0.0",
    instance: "I1",
    requestId: "R1",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    latencyMs: 1,
    status: "ok",
    attempts: 1,
    rate: 1,
    ...over,
  };
}
