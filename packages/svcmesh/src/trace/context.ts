// W3C trace context (https://www.w3.org/TR/trace-context/): the `traceparent` and
// `tracestate` headers every mesh request carries, so one trace spans all hops with or
// without an OpenTelemetry SDK. Without one, the mesh makes its own ids.
import { randomFillSync } from "node:crypto";
import { Header } from "../subjects.js";

/** The trace a call belongs to, as the `traceparent`/`tracestate` headers carry it. */
export interface TraceContext {
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** 16 lowercase hex digits: the span this context points at (the parent of the next hop). */
  readonly spanId: string;
  /** W3C trace flags; bit 0 is "sampled". */
  readonly flags: number;
  /** The `tracestate` header, or "". */
  readonly state: string;
}

// Ids must be unique, not secret. Random bytes come from the OS 8 KiB at a time and are
// hex-encoded in one go; an id is a slice of that string (V8 keeps a slice of 13 or more
// characters as a view into it, not a copy). Per id that is no Buffer, no hex conversion
// and no Math.random: less than half of what writing random bytes and hex-slicing them per
// id cost. A pool string stays alive while any id cut from it does (16 KiB per ~340 calls).
const POOL_BYTES = 8192;
let pool = "";
let poolAt = 0;

function randomHex(chars: number): string {
  if (poolAt + chars > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES)).toString("hex");
    poolAt = 0;
  }
  return pool.slice(poolAt, (poolAt += chars));
}

const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

export function newTraceId(): string {
  const id = randomHex(32);
  return id === ZERO_TRACE ? newTraceId() : id;
}

export function newSpanId(): string {
  const id = randomHex(16);
  return id === ZERO_SPAN ? newSpanId() : id;
}

const FLAGS = ["00", "01"];

export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${FLAGS[flags] ?? (flags & 0xff).toString(16).padStart(2, "0")}`;
}

/** Whether text[from, to) is lowercase hex (the spec allows no other case). */
function isLowerHex(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

const DASH = 45;
const F = 102; // "f"

/** The frame every traceparent has, `vv-<32 hex>-<16 hex>-ff[-...]`: its length and dashes. */
function framed(text: string): boolean {
  return text.length >= 55 && text.charCodeAt(2) === DASH && text.charCodeAt(35) === DASH && text.charCodeAt(52) === DASH;
}

/**
 * Parses a `traceparent` header; undefined for anything malformed or all-zero ids (a
 * call then starts a new trace, as the spec says). Version 00 must have exactly four
 * fields; later versions may add fields, which are ignored. A character scan rather
 * than a regular expression: this runs on every request a service handles.
 */
export function parseTraceparent(text: string, state = ""): TraceContext | undefined {
  const n = text.length;
  if (n > 512 || !framed(text) || (n > 55 && text.charCodeAt(55) !== DASH)) return undefined;
  if (!isLowerHex(text, 0, 2) || !isLowerHex(text, 3, 35) || !isLowerHex(text, 36, 52) || !isLowerHex(text, 53, 55)) return undefined;
  const version = text.slice(0, 2);
  if (version === "ff" || (version === "00" && n !== 55)) return undefined;
  const traceId = text.slice(3, 35);
  const spanId = text.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags: parseInt(text.slice(53, 55), 16), state: state.length <= 512 ? state : "" };
}

/**
 * Whether a traceparent header says "not sampled": the right shape and an even flags
 * byte. The ids are not checked here (that costs as much as the rest of a request's
 * tracing on a small machine); whoever uses them parses the header in full.
 */
export function notSampled(traceparent: string): boolean {
  if (!framed(traceparent) || !isLowerHex(traceparent, 53, 55)) return false;
  // Version "ff" is invalid. The sampled bit is the low bit of the flags' last hex digit:
  // read from the characters, since slicing and parseInt showed in service profiles.
  if (traceparent.charCodeAt(0) === F && traceparent.charCodeAt(1) === F) return false;
  return (hexDigit(traceparent.charCodeAt(54)) & 1) === 0;
}

/** The trace id of a traceparent header, or "" if it is not one (no full parse: audit records only need the id). */
export function traceIdOf(traceparent: string): string {
  if (traceparent.length < 55 || traceparent.charCodeAt(2) !== DASH || !isLowerHex(traceparent, 3, 35)) return "";
  return traceparent.slice(3, 35);
}

/** Request header lines for a trace context, each ending in CRLF (see wire.ts). */
export function traceHeaderLines(traceId: string, spanId: string, flags: number, state: string): string {
  const parent = `${Header.traceparent}: ${formatTraceparent(traceId, spanId, flags)}\r\n`;
  return state ? `${parent}${Header.tracestate}: ${state.replace(/[\r\n]/g, "")}\r\n` : parent;
}

/**
 * Whether an ok call of this trace is kept at `rate`: decided from the trace id, so
 * every hop of one trace decides the same way (a whole trace is kept or none of it).
 */
export function sampledAt(traceId: string, rate: number): boolean {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  // The last 8 hex digits as a fraction of 2^32 (no slice, no parseInt: every call asks).
  let n = 0;
  for (let i = 24; i < 32; i++) n = n * 16 + hexDigit(traceId.charCodeAt(i));
  return n / 0x1_0000_0000 < rate;
}

/** A hex digit's value (either case); anything else counts as 0. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return 0;
}
