// For sibling packages (cli, examples, bench) only: not a stable API.
export * from "./subjects.js";
export * from "./wire.js";
export * from "./frames.js";
export { BodyDecoder } from "./msgpack-decoder.js";
export { BodyEncoder } from "./msgpack-encoder.js";
export { Registry, instanceFromInfo, MESH_METADATA_KEY } from "./registry.js";
export { resolveRoute, type RunningInstance, type Route } from "./target.js";
export * from "./pipeline.js";
export * from "./settings.js";
export { MeshError, isMeshError, toMeshError } from "./errors.js";
export * from "./interceptors/breaker.js";
export { createRetryInterceptor, shouldRetry, neverSent, type RetryInterceptor, type RetryExhausted } from "./interceptors/retry.js";
export * from "./events/index.js";
export * from "./policy/index.js";
export * from "./trace/event.js";
export * from "./audit/record.js";
export { ensureStream, type StreamOptions, type StreamSpec } from "./jetstream/stream.js";
export { ackOutcome } from "./jetstream/pub-ack.js";
