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

/** Registers the SDK globally; returns its shutdown. */
export function registerTracing(rate) {
  const provider = new BasicTracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(rate) }),
    spanProcessors: [new BatchSpanProcessor(discard, { maxQueueSize: 8192, maxExportBatchSize: 1024, scheduledDelayMillis: 500 })],
  });
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}
