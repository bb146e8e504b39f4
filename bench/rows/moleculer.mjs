// Rows "moleculer" and "moleculerFt": Moleculer 0.14 (0.15 needs Node 22), one broker
// per process on the bench's nats-server through its NATS transporter, with the JSON
// serializer (its default). Service "payments", action "reimburse" doing decide(claim);
// the caller does broker.call("payments.reimburse", claim). No `params` schema, so
// Moleculer validates nothing (svcmesh rows validate with zod; bare rows do not).
//   moleculer:   fault tolerance off: no circuit breaker, no retries, no tracing; only
//                the request timeout (contract TIMEOUT_MS).
//   moleculerFt: { faultTolerance: true }: circuit breaker and retry policy on (Moleculer's
//                default thresholds and retry counts), the same timeout, and tracing with
//                1% sampling into an exporter that drops the spans (as bench/otel.mjs does
//                for svcmesh: the cost of sending spans is the exporter's).
// Moleculer's own balancer is left on (its default), as a Moleculer user would have it.
import moleculer from "moleculer";
import { TIMEOUT_MS, claim, decide } from "../contract.mjs";

const { ServiceBroker, TracerExporters } = moleculer;

const TRACE_RATE = 0.01;

class DiscardSpans extends TracerExporters.Base {}

function brokerOptions(url, nodeRole, faultTolerance) {
  return {
    namespace: "bench",
    nodeID: `${nodeRole}-${process.pid}`,
    transporter: { type: "NATS", options: { servers: url } },
    serializer: "JSON",
    logger: false,
    requestTimeout: TIMEOUT_MS,
    circuitBreaker: { enabled: faultTolerance },
    retryPolicy: { enabled: faultTolerance },
    tracing: faultTolerance ? { enabled: true, exporter: new DiscardSpans(), sampling: { rate: TRACE_RATE } } : { enabled: false },
    metrics: { enabled: false },
  };
}

export async function serve(url, { faultTolerance = false } = {}) {
  const broker = new ServiceBroker(brokerOptions(url, "payments", faultTolerance));
  broker.createService({
    name: "payments",
    actions: { reimburse: (ctx) => decide(ctx.params) },
  });
  await broker.start();
  return { close: () => broker.stop() };
}

export async function caller(url, { faultTolerance = false } = {}) {
  const broker = new ServiceBroker(brokerOptions(url, "claims", faultTolerance));
  await broker.start();
  // Discovery is Moleculer's INFO/heartbeat exchange over NATS: wait until it knows payments.
  await broker.waitForServices("payments", 10_000);
  return {
    call: () => broker.call("payments.reimburse", claim),
    close: () => broker.stop(),
  };
}
