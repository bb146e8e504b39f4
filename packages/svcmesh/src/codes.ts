// Every error a caller can see has one of these codes. They travel over the wire
// one-to-one in the Mesh-Error-Code header. Once published, a code is never renamed
// or reused.
export const ErrorCode = {
  NOT_FOUND: "NOT_FOUND",
  NO_RESPONDERS: "NO_RESPONDERS",
  TIMEOUT: "TIMEOUT",
  BAD_REQUEST: "BAD_REQUEST",
  BAD_RESPONSE: "BAD_RESPONSE",
  FORBIDDEN: "FORBIDDEN",
  UNAUTHENTICATED: "UNAUTHENTICATED",
  RATE_LIMITED: "RATE_LIMITED",
  CIRCUIT_OPEN: "CIRCUIT_OPEN",
  UNAVAILABLE: "UNAVAILABLE",
  HANDLER_ERROR: "HANDLER_ERROR",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Whether a failure with this code may be worth trying again. `TIMEOUT` and
 * `UNAVAILABLE` are retryable only for idempotent endpoints; the retry interceptor
 * makes that distinction, this table only says what is transient at all.
 */
export const retryableCodes: Readonly<Record<ErrorCode, boolean>> = {
  NOT_FOUND: false,
  NO_RESPONDERS: true,
  TIMEOUT: true,
  BAD_REQUEST: false,
  BAD_RESPONSE: false,
  FORBIDDEN: false,
  UNAUTHENTICATED: false,
  RATE_LIMITED: true,
  CIRCUIT_OPEN: false,
  UNAVAILABLE: true,
  HANDLER_ERROR: false,
};

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ErrorCode, value);
}
