// What the OpenTelemetry SDK itself costs per span, with no mesh and no NATS: the floor
// under the "tracing on" rows. Spans are made as the mesh makes them (a CLIENT span at
// the caller, a SERVER span under a remote parent at the service, the same attributes,
// the SDK registered by otel.mjs as the rows register it) in a tight loop that yields to
// the event loop every 256 spans, so the batch processor runs as it does in the rows.
//
//   node bench/sdk-span-cost.mjs [--rounds 5] [--spans 200000]
//
// Compare "per call" with the core row's CPU per call (tracing-cost.mjs's "off", caller,
// service and nats-server together): a call that makes both spans cannot cost less than
// core + that, so core / (core + per call) bounds the tracing rows' ratio from above.
import { context, ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { parseArgs } from "node:util";
import { registerTracing } from "./otel.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, spans: { type: "string", default: "200000" } } });
const rounds = Number(values.rounds);
const spans = Number(values.spans);

const template = { "rpc.system": "nats", "messaging.system": "nats", "rpc.service": "bench", "rpc.method": "echo" };
const clientAttributes = { ...template, "svcmesh.caller": "bench-caller" };
const remote = (traceId, sampled) => trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: "00f067aa0ba902b7", traceFlags: sampled ? 1 : 0, isRemote: true });

// One call's worth of span work at each hop, as interceptors/trace.ts and server/endpoint.ts do it.
function clientSpan(tracer, i) {
  const span = tracer.startSpan("bench/echo", { kind: SpanKind.CLIENT }, context.active());
  if (span.isRecording()) {
    span.setAttributes(clientAttributes);
    span.setAttribute("svcmesh.request_id", `r-${i}`);
    span.setAttribute("svcmesh.attempts", 1);
    span.setAttribute("svcmesh.instance", "bench-1");
  }
  span.end();
  return span.spanContext().traceId;
}

function serverSpan(tracer, traceId, i) {
  const span = tracer.startSpan("bench/echo", { kind: SpanKind.SERVER }, remote(traceId, true));
  if (span.isRecording()) {
    span.setAttributes(template);
    span.setAttribute("svcmesh.request_id", `r-${i}`);
  }
  span.end();
}

async function measure(label, fn) {
  const samples = [];
  for (let r = 0; r < rounds; r++) {
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < spans; i++) {
      fn(i);
      if ((i & 255) === 0) await new Promise(setImmediate);
    }
    const cpu = process.cpuUsage(cpu0);
    samples.push((cpu.user + cpu.system) / spans);
  }
  samples.sort((a, b) => a - b);
  // The first round warms the JIT up; the median of all rounds is past it.
  console.log(`| ${label} | ${samples[samples.length >> 1].toFixed(2)} | ${samples[0].toFixed(2)}–${samples[samples.length - 1].toFixed(2)} |`);
}

console.log("| span work per call | CPU µs, median | min–max |");
console.log("| --- | ---: | ---: |");
for (const rate of [1, 0.01]) {
  const shutdown = registerTracing(rate);
  const tracer = trace.getTracer("svcmesh");
  const tid = "4bf92f3577b34da6a3ce929d0e0e4736";
  await measure(`${rate * 100}%: caller's CLIENT span`, (i) => clientSpan(tracer, i));
  if (rate === 1) {
    await measure(`${rate * 100}%: service's SERVER span`, (i) => serverSpan(tracer, tid, i));
    await measure(`${rate * 100}%: both (per call)`, (i) => serverSpan(tracer, clientSpan(tracer, i), i));
  }
  await shutdown();
  trace.disable();
}
process.exit(0);
