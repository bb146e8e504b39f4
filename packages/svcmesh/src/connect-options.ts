// connect()'s options, checked whole before anything dials: a misspelt or mistyped option
// is a BAD_REQUEST naming its path, never a setting silently ignored (audit.enabled "no"
// leaving audit on) nor a failure after the connection is open (which would keep the
// process alive). The settings, trace rate and audit numbers have checkers of their own.
import { z } from "zod";
import { MeshError } from "./errors.js";

/** pino's levels; anything else makes pino throw a plain Error. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const whole = (min: number) => z.number().int().min(min);
const duration = z.number().finite().min(0);
const positive = z.number().finite().positive();
/** Checked in depth elsewhere (settings.ts, audit/writer.ts, stream options). */
const elsewhere = z.unknown().optional();

const isUrl = (v: unknown): boolean => typeof v === "string" && v.trim().length > 0;

const isLogger = (v: unknown): boolean =>
  typeof v === "object" && v !== null && ["child", "error", "warn", "info", "debug"].every((f) => typeof (v as Record<string, unknown>)[f] === "function");

const Options = z.object({
  servers: z.custom((v) => isUrl(v) || (Array.isArray(v) && v.length > 0 && v.every(isUrl)), {
    error: "must be a server URL or a non-empty list of them (leave it out to use NATS_URL)",
  }).optional(),
  name: z.string().min(1),
  logger: z.custom((v) => isLogger(v), { error: "must be a pino logger" }).optional(),
  logLevel: z.enum(LOG_LEVELS).optional(),
  defaults: elsewhere,
  services: z.record(z.string(), elsewhere).optional(),
  discovery: z.object({ ttlMs: duration, jitterMs: duration, maxWaitMs: duration }).partial().strict().optional(),
  policy: z.object({ watch: z.boolean(), waitMs: duration, required: z.boolean() }).partial().strict().optional(),
  events: z.object({
    windowMs: positive,
    maxWindows: whole(1),
    idleWindows: whole(1),
    createStream: z.boolean(),
    stream: elsewhere,
    maxInFlight: whole(1),
    closeTimeoutMs: duration,
  }).partial().strict().optional(),
  seed: z.string().optional(),
  tls: z.object({ caFile: z.string(), certFile: z.string(), keyFile: z.string(), ca: z.string(), cert: z.string(), key: z.string() }).partial().strict().optional(),
  trace: z.union([
    z.literal(false),
    z.object({
      sampleRate: elsewhere,
      followParentSampling: z.boolean(),
      rootSampling: elsewhere,
      flushMs: positive,
      maxBuffered: whole(1),
      maxBatch: whole(1),
    }).partial().strict(),
  ], { error: "must be false (off) or an options object" }).optional(),
  audit: z.object({
    enabled: z.boolean(),
    createStream: z.boolean(),
    stream: elsewhere,
    maxBacklog: elsewhere,
    maxInFlight: elsewhere,
    ackTimeoutMs: elsewhere,
    resendHorizonMs: elsewhere,
    closeTimeoutMs: elsewhere,
    whenFull: elsewhere,
  }).partial().strict().optional(),
  nats: z.record(z.string(), z.unknown()).optional(),
}).strict();

export function checkConnectOptions(options: unknown): void {
  if (typeof options !== "object" || options === null) throw new MeshError("BAD_REQUEST", "connect(): options must be an object with at least a name");
  const parsed = Options.safeParse(options);
  if (parsed.success) return;
  const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join(".") : "options"}: ${i.message}`);
  throw new MeshError("BAD_REQUEST", `connect(): ${issues.join("; ")}`, { details: { issues: parsed.error.issues } });
}
