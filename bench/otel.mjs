// An OpenTelemetry SDK as a user would register it, for the "tracing on" rows: a
// parent-based sampler at the row's rate and a batch span processor whose exporter
// drops the spans (the cost of sending them somewhere is the exporter's, not the mesh's).
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";

const discard = {
  export(_spans, done) {
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
};

// The bench's batch settings; the SDK's own OTEL_BSP_* variables override each, to try
// others without editing this file (the SDK reads them only for options left unset).
const BATCH = { maxQueueSize: ["OTEL_BSP_MAX_QUEUE_SIZE", 8192], maxExportBatchSize: ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1024], scheduledDelayMillis: ["OTEL_BSP_SCHEDULE_DELAY", 500] };

function batchSettings() {
  return Object.fromEntries(Object.entries(BATCH).map(([option, [variable, value]]) => [option, process.env[variable] ? Number(process.env[variable]) : value]));
}

/** Registers the SDK globally; returns its shutdown. */
export function registerTracing(rate) {
  const provider = new BasicTracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(rate) }),
    spanProcessors: [new BatchSpanProcessor(discard, batchSettings())],
  });
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}
