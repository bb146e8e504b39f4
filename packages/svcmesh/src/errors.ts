import { type ErrorCode, isErrorCode, retryableCodes } from "./codes.js";

// A brand instead of instanceof, so errors from a second copy of the package and
// errors decoded from the wire are recognised alike.
const BRAND = Symbol.for("svcmesh.MeshError");

export interface MeshErrorOptions {
  details?: unknown;
  cause?: unknown;
  retryable?: boolean;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details?: unknown;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MeshError";
    this.code = code;
    this.retryable = options.retryable ?? retryableCodes[code];
    if (options.details !== undefined) this.details = options.details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isMeshError(e: unknown): e is MeshError {
  return typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[BRAND] === true;
}

/** Any thrown value as a MeshError: unknown values become HANDLER_ERROR, the original kept as cause. */
export function toMeshError(e: unknown, fallback: ErrorCode = "HANDLER_ERROR"): MeshError {
  if (isMeshError(e)) return e;
  const message = e instanceof Error ? e.message : typeof e === "string" ? e : String(e);
  return new MeshError(fallback, message || fallback, { cause: e });
}

export function meshErrorFromWire(code: string, message: string, details?: unknown): MeshError {
  if (!isErrorCode(code)) {
    return new MeshError("BAD_RESPONSE", `unknown error code ${JSON.stringify(code)}: ${message}`, { details });
  }
  return new MeshError(code, message, details === undefined ? {} : { details });
}

/** A bad argument as an error message shows it: strings quoted, objects not expanded. */
export function showValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (typeof value === "object" && value !== null) return Array.isArray(value) ? "an array" : "an object";
  return String(value);
}
