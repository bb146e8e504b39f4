// The resilience settings, one typed shape filled from code now (connect({ defaults,
// services })) and from the policy document later (issue 3/5). Documented defaults
// keep a caller that configures nothing protected.
import { z } from "zod";

export const RetrySettings = z.object({
  /** Total attempts, the first included (1 = no retry). */
  attempts: z.number().int().min(1).max(10),
  /** First backoff; doubles per attempt, with full jitter. */
  backoffMs: z.number().int().min(0),
  maxBackoffMs: z.number().int().min(0),
  /** Budget of one attempt; by default an attempt may use all that is left of the call's. */
  attemptTimeoutMs: z.number().int().positive().optional(),
});

export const BreakerSettings = z.object({
  enabled: z.boolean(),
  /** Open when at least this share of calls in the window failed... */
  errorThresholdPercentage: z.number().min(1).max(100),
  /** ...and the window saw at least this many calls. */
  volumeThreshold: z.number().int().min(1),
  /** Also open once the window holds this many failures, whatever the ratio (off by default). */
  failureThreshold: z.number().int().min(1).optional(),
  /** How long an open breaker waits before letting one probe through. */
  resetTimeoutMs: z.number().int().positive(),
  /** Length of the rolling window the percentages are taken over. */
  rollingCountTimeoutMs: z.number().int().positive(),
});

export const RateLimit = z.object({
  /** Sustained requests per second. */
  rps: z.number().positive(),
  /** Bucket size: how many may come at once; default = rps. */
  burst: z.number().positive().optional(),
});

export const CallSettings = z.object({
  timeoutMs: z.number().int().positive(),
  retry: RetrySettings,
  breaker: BreakerSettings,
});

export type RetrySettings = z.infer<typeof RetrySettings>;
export type BreakerSettings = z.infer<typeof BreakerSettings>;
export type RateLimit = z.infer<typeof RateLimit>;
export type CallSettings = z.infer<typeof CallSettings>;

// Strict at every level: a misspelt key (`breaker: { enable: false }`) must be an error,
// not a setting silently left at its default.
/** Retry settings as users write them (connect(), a policy, one call): every field optional. */
export const RetrySettingsInput = RetrySettings.partial().strict();
export const BreakerSettingsInput = BreakerSettings.partial().strict();

/** Settings as users write them: every field optional, nested objects merged field by field. */
export const CallSettingsInput = z.strictObject({
  timeoutMs: CallSettings.shape.timeoutMs.optional(),
  retry: RetrySettingsInput.optional(),
  breaker: BreakerSettingsInput.optional(),
});
export type CallSettingsInput = z.infer<typeof CallSettingsInput>;

export const DEFAULT_CALL_SETTINGS: CallSettings = {
  timeoutMs: 2000,
  retry: { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 },
  breaker: { enabled: true, errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30_000, rollingCountTimeoutMs: 10_000 },
};

/** Later layers win, field by field. */
export function mergeCallSettings(base: CallSettings, ...layers: (CallSettingsInput | undefined)[]): CallSettings {
  let out = base;
  for (const l of layers) {
    if (!l) continue;
    out = {
      timeoutMs: l.timeoutMs ?? out.timeoutMs,
      retry: { ...out.retry, ...definedOnly(l.retry) },
      breaker: { ...out.breaker, ...definedOnly(l.breaker) },
    };
  }
  return out;
}

function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  if (!o) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
