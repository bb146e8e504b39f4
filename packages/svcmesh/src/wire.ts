// The only place that knows how bodies and mesh headers look on the wire.
import type { Msg, MsgHdrs } from "nats";
import type { ErrorCode } from "./codes.js";
import { MeshError, meshErrorFromWire } from "./errors.js";
import { BodyDecoder } from "./msgpack-decoder.js";
import { BodyEncoder } from "./msgpack-encoder.js";
import { ExtensionCodec } from "@msgpack/msgpack";
import { Header } from "./subjects.js";
import { unsharedCopy } from "./unshared.js";

/**
 * Values msgpack would change without a word: a Map or Set becomes `{}` (their entries
 * are not own properties) and a typed array other than bytes becomes its raw bytes.
 * They are refused instead, so nothing is lost on the way (the caller gets BAD_REQUEST,
 * a handler's result BAD_RESPONSE). Asked once per object encoded, after Date's check.
 */
const refusing = new ExtensionCodec();
refusing.register({
  type: 0,
  encode: (value) => {
    if (typeof value !== "object" || value === null) return null;
    if (value instanceof Map) throw new TypeError("a Map would arrive as an empty object: send Object.fromEntries(map) or [...map]");
    if (value instanceof Set) throw new TypeError("a Set would arrive as an empty object: send [...set]");
    if (ArrayBuffer.isView(value) && !(value instanceof Uint8Array)) {
      throw new TypeError(`a ${value.constructor.name} would arrive as raw bytes: send an array, or a Uint8Array of the bytes`);
    }
    return null;
  },
  decode: (data) => data,
});
const encoder = new BodyEncoder({ ignoreUndefined: true, extensionCodec: refusing });
/**
 * Array length prefixes are capped by the body's size (each element takes a byte):
 * unbounded, msgpack preallocates `new Array(n)`, and a 5-byte body claiming 30M
 * elements cost 240 MB. Small bodies share one decoder; a large one gets its own, cheap
 * next to decoding it, and not kept (a decoder holds on to its last input).
 */
const SMALL_BODY = 65_536;
const decoder = new BodyDecoder({ maxArrayLength: SMALL_BODY });
const textEncoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const MAX_HEADER_VALUE = 1024;
const LINE_BREAK = /[\r\n]/;

/**
 * msgpack-encodes a value into a fresh buffer, which nats.js may hold until it flushes.
 * The encoder's shared buffer is copied into a slice of Node's buffer pool: msgpack's
 * own copying encode() allocates a new ArrayBuffer per call, ~10× dearer here.
 */
export function encodeBody(value: unknown): Uint8Array {
  const shared = encodeBodyShared(value);
  if (shared.length === 0) return EMPTY;
  const out = Buffer.allocUnsafe(shared.length);
  out.set(shared);
  return out;
}

/**
 * msgpack-encodes a value into the encoder's shared buffer: valid only until the next
 * encode, for a caller that copies it at once (frames.ts). `undefined` is empty.
 */
export function encodeBodyShared(value: unknown): Uint8Array {
  return value === undefined ? EMPTY : encoder.encodeSharedRef(value);
}

/** Decodes a msgpack body; an empty body is `undefined`. Throws BAD_REQUEST-free errors: callers pick the code. */
export function decodeBody(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return undefined;
  return (bytes.length < SMALL_BODY ? decoder : new BodyDecoder({ maxArrayLength: bytes.length })).decode(bytes);
}

/** Header values may not hold CR/LF and should stay short. */
export function headerValue(text: string): string {
  if (text.length <= MAX_HEADER_VALUE && !LINE_BREAK.test(text)) return text; // the usual case: no copy
  const flat = text.replace(/[\r\n]+/g, " ");
  return flat.length > MAX_HEADER_VALUE ? flat.slice(0, MAX_HEADER_VALUE - 1) + "…" : flat;
}

/**
 * A header block nats.js can send: its publish() only ever calls `encode()` on the
 * headers it is given (protocol.js), so a precomputed block is enough.
 */
export interface EncodedHeaders {
  encode(): Uint8Array;
}

/** The type nats.js declares for publish options; the cast lives here, once. */
export function asNatsHeaders(h: EncodedHeaders): MsgHdrs {
  return h as unknown as MsgHdrs;
}

/**
 * Request metadata as standard NATS headers (readable by any NATS tool). The constant
 * head of the block (status line, caller, deadline key) is encoded once per connection;
 * per call only the ASCII tail (deadline digits, request id, extra lines) is written
 * (frames.ts puts both into the message's one buffer).
 */
export class RequestHeaders {
  readonly head: Uint8Array;

  constructor(caller: string) {
    this.head = textEncoder.encode(`NATS/1.0\r\n${Header.caller}: ${headerValue(caller)}\r\n${Header.deadline}: `);
  }

  /**
   * The tail of one request's block. `requestId` must be ASCII (ours are nuid.base36);
   * `lines` are extra ASCII header lines, each ending in CRLF (identity token, policy
   * revision), pre-rendered by the caller and cached per target; `traceLines` are the
   * call's traceparent/tracestate lines (trace/context.ts).
   */
  tail(deadline: number, requestId: string, lines = "", traceLines = ""): string {
    return `${deadline}\r\n${Header.requestId}: ${requestId}\r\n${lines}${traceLines}\r\n`;
  }
}

/**
 * What a request's headers say. A class, not an object literal: it lives as long as its
 * handler, and V8 may move a literal's every later object to old space once most of them
 * outlive a minor GC (see Pending in client/transport.ts).
 */
export class RequestMeta {
  /** As the caller wrote it; the verified identity replaces it where a policy requires tokens. */
  caller = "";
  deadline = 0;
  requestId = "";
  /** Mesh-Token, or "". */
  token = "";
  /** Mesh-Policy, or "". */
  policy = "";
  /** W3C traceparent, or "". */
  traceparent = "";
  /** W3C tracestate, or "". */
  tracestate = "";
}

const textDecoder = new TextDecoder();
const CALLER_PREFIX = `${Header.caller}:`;
const DEADLINE_PREFIX = `${Header.deadline}:`;
const REQUEST_ID_PREFIX = `${Header.requestId}:`;
const TOKEN_PREFIX = `${Header.token}:`;
const POLICY_PREFIX = `${Header.policy}:`;
const TRACEPARENT_PREFIX = `${Header.traceparent}:`;
const TRACESTATE_PREFIX = `${Header.tracestate}:`;
const ERROR_CODE_KEY = textEncoder.encode(`${Header.errorCode}:`);
const SERVICE_ERROR_KEY = textEncoder.encode("Nats-Service-Error:");
const LF = 10;
const CR = 13;

/**
 * Where the raw header block of a received message lies: bytes [0, end) of `bytes`.
 * nats.js decodes headers into a map with an array filter per lookup (~1.9 µs for our
 * three); scanning the bytes ourselves is several times cheaper. We read nats.js 2.x's
 * MsgImpl fields (`_msg.hdr`, `_rdata`; services-framework messages wrap one as
 * `.msg`) and say null, meaning "use the public API", if those ever change.
 */
function rawHeaders(msg: Msg): { bytes: Uint8Array; end: number } | undefined | null {
  const inner = ((msg as unknown as { msg?: unknown }).msg ?? msg) as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const hdr = inner._msg?.hdr;
  if (typeof hdr !== "number" || !(inner._rdata instanceof Uint8Array)) return null;
  return hdr > -1 ? { bytes: inner._rdata, end: hdr } : undefined;
}

/**
 * The decimal number a message's subject ends with after its first `prefixBytes` bytes
 * (a reply token on a private inbox), or -1. Read from the subject's bytes when nats.js's
 * MsgImpl exposes them (`_msg.subject`): decoding the subject into a string, slicing it
 * and hashing the slice cost more than the rest of matching a reply.
 */
export function subjectNumber(msg: Msg, prefixBytes: number): number {
  const raw = (msg as unknown as { _msg?: { subject?: unknown } })._msg?.subject;
  const bytes = raw instanceof Uint8Array ? raw : textEncoder.encode(msg.subject);
  // 15 digits stay exact in a double.
  if (bytes.length <= prefixBytes || bytes.length - prefixBytes > 15) return -1;
  let n = 0;
  for (let i = prefixBytes; i < bytes.length; i++) {
    const d = bytes[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** The raw header block of a received message, or undefined (none) or null (internals changed). */
export function rawHeaderBlock(msg: Msg): Uint8Array | undefined | null {
  const raw = rawHeaders(msg);
  return raw ? raw.bytes.subarray(0, raw.end) : raw;
}

/** Whether `bytes` holds `key` at `pos` (before `end`). */
export function keyAt(bytes: Uint8Array, pos: number, end: number, key: Uint8Array): boolean {
  if (pos + key.length > end) return false;
  for (let i = 0; i < key.length; i++) if (bytes[pos + i] !== key[i]) return false;
  return true;
}

/** Start of the header line after the one at `pos` (the status line at 0), or -1. */
function lineAfter(bytes: Uint8Array, pos: number, end: number): number {
  const lf = bytes.indexOf(LF, pos);
  return lf < 0 || lf + 1 >= end ? -1 : lf + 1;
}

function lineEnd(bytes: Uint8Array, pos: number, end: number): number {
  const cr = bytes.indexOf(CR, pos);
  return cr < 0 || cr > end ? end : cr;
}

/** The trimmed UTF-8 text of bytes[start, end), without a subarray for Buffers. */
function textOf(bytes: Uint8Array, start: number, end: number): string {
  while (start < end && bytes[start] === 32) start++;
  while (end > start && bytes[end - 1] === 32) end--;
  return bytes instanceof Buffer ? bytes.toString("utf8", start, end) : textDecoder.decode(bytes.subarray(start, end));
}

const keyBytes = new Map<string, Uint8Array>();

/** The value of `key` (exact, first occurrence) in a NATS header block, or "". */
export function headerFromBlock(block: Uint8Array, key: string): string {
  let k = keyBytes.get(key);
  if (!k) {
    k = textEncoder.encode(`${key}:`);
    if (keyBytes.size < 64) keyBytes.set(key, k);
  }
  for (let pos = lineAfter(block, 0, block.length); pos > 0; pos = lineAfter(block, pos, block.length)) {
    if (keyAt(block, pos, block.length, k)) return textOf(block, pos + k.length, lineEnd(block, pos, block.length));
  }
  return "";
}

/** A raw header block as text: one decode for the whole block. */
function headerText(bytes: Uint8Array, end: number): string {
  return bytes instanceof Buffer ? bytes.toString("utf8", 0, end) : textDecoder.decode(bytes.subarray(0, end));
}

/** text[start, end) without leading and trailing spaces. */
function trimmedSlice(text: string, start: number, end: number): string {
  while (start < end && text.charCodeAt(start) === 32) start++;
  while (end > start && text.charCodeAt(end - 1) === 32) end--;
  return text.slice(start, end);
}

/** The trimmed value of the line at `pos` if it starts with `prefix` (its key and colon), else "". */
function valueAfter(text: string, pos: number, prefix: string, valueEnd: number): string {
  return text.startsWith(prefix, pos) ? trimmedSlice(text, pos + prefix.length, valueEnd) : "";
}

/**
 * Fills `meta` from a header block's text (status line first); returns the deadline's
 * text. The block is decoded once and read with string built-ins: finding lines with
 * Buffer#indexOf, comparing keys byte by byte in JS and decoding each value on its own
 * cost 1.6-3 µs per request on the bench VM, the dearest step of a service's request.
 * The letter after "Mesh-" tells the mesh headers apart, so each line is compared
 * with one key at most; a field already read keeps its first non-empty value.
 */
function readMetaLines(text: string, meta: RequestMeta): string {
  let deadlineText = "";
  const n = text.length;
  for (let pos = text.indexOf("\n") + 1; pos > 0 && pos < n; ) {
    const lf = text.indexOf("\n", pos);
    const stop = lf < 0 ? n : lf;
    const valueEnd = stop > pos && text.charCodeAt(stop - 1) === 13 ? stop - 1 : stop;
    const first = text.charCodeAt(pos);
    if (first === 77 /* M */ && text.startsWith("Mesh-", pos)) {
      switch (text.charCodeAt(pos + 5)) {
        case 68 /* D */:
          deadlineText ||= valueAfter(text, pos, DEADLINE_PREFIX, valueEnd);
          break;
        case 67 /* C */:
          meta.caller ||= valueAfter(text, pos, CALLER_PREFIX, valueEnd);
          break;
        case 82 /* R */:
          meta.requestId ||= valueAfter(text, pos, REQUEST_ID_PREFIX, valueEnd);
          break;
        case 84 /* T */:
          meta.token ||= valueAfter(text, pos, TOKEN_PREFIX, valueEnd);
          break;
        case 80 /* P */:
          meta.policy ||= valueAfter(text, pos, POLICY_PREFIX, valueEnd);
          break;
      }
    } else if (first === 116 /* t */) {
      meta.traceparent ||= valueAfter(text, pos, TRACEPARENT_PREFIX, valueEnd);
      meta.tracestate ||= valueAfter(text, pos, TRACESTATE_PREFIX, valueEnd);
    }
    if (lf < 0) break;
    pos = lf + 1;
  }
  return deadlineText;
}

/**
 * Header blocks longer than this have their values copied out of the block's text
 * (unshared.ts): a value kept past its request would keep the whole block, a megabyte of
 * it for each of up to 10,000 rate-limit buckets. The caches that keep values copy them
 * anyway when they add one; this covers any that does not.
 */
const MAX_SHARED_BLOCK = 2048;

function unshare(meta: RequestMeta): void {
  meta.caller = unsharedCopy(meta.caller);
  meta.requestId = unsharedCopy(meta.requestId);
  meta.token = unsharedCopy(meta.token);
  meta.policy = unsharedCopy(meta.policy);
  meta.traceparent = unsharedCopy(meta.traceparent);
  meta.tracestate = unsharedCopy(meta.tracestate);
}

/** Reads request metadata; missing values get safe defaults so raw NATS clients can call too. */
export function readRequestMeta(msg: Msg, now: number, defaultTimeoutMs: number): RequestMeta {
  const meta = new RequestMeta();
  let deadlineText = "";
  const raw = rawHeaders(msg);
  if (raw === null) {
    const h = msg.headers;
    if (h) {
      meta.caller = h.get(Header.caller);
      deadlineText = h.get(Header.deadline);
      meta.requestId = h.get(Header.requestId);
      meta.token = h.get(Header.token);
      meta.policy = h.get(Header.policy);
      meta.traceparent = h.get(Header.traceparent);
      meta.tracestate = h.get(Header.tracestate);
    }
    unshare(meta); // nats.js's values are slices of its decoded block too
  } else if (raw !== undefined) {
    deadlineText = readMetaLines(headerText(raw.bytes, raw.end), meta);
    if (raw.end > MAX_SHARED_BLOCK) unshare(meta);
  }
  const deadline = Number(deadlineText);
  meta.deadline = deadlineText !== "" && Number.isFinite(deadline) && deadline > 0 ? deadline : now + defaultTimeoutMs;
  return meta;
}

/** The header lines every reply of an instance carries: who answered (for trace records). */
export function originLines(instance: string, version: string): string {
  return `${Header.instance}: ${headerValue(instance)}\r\n${Header.version}: ${headerValue(version)}\r\n`;
}

/** A constant header block of `lines` (each ending in CRLF), encoded once: reply origins, audit message ids. */
export function headerBlock(lines: string): EncodedHeaders {
  const block = textEncoder.encode(`NATS/1.0\r\n${lines}\r\n`);
  return { encode: () => block };
}

/** Error replies carry code and message in headers and the details, if any, as the msgpack body. */
export class ErrorReplyHeaders implements EncodedHeaders {
  constructor(
    private readonly code: ErrorCode,
    private readonly message: string,
    /** originLines() of the instance replying, or "". */
    private readonly origin = "",
  ) {}

  encode(): Uint8Array {
    return textEncoder.encode(
      `NATS/1.0\r\n${Header.errorCode}: ${this.code}\r\n${Header.errorMessage}: ${headerValue(this.message)}\r\n${this.origin}\r\n`,
    );
  }
}

/** The instance (and its version) that sent a reply, from its origin headers; "" when absent. */
export interface ReplyOrigin {
  readonly instance: string;
  readonly version: string;
}

const NO_ORIGIN: ReplyOrigin = { instance: "", version: "" };

/**
 * The header blocks of recent replies and who they name. An instance answers every ok
 * call with the same constant block (originLines), so with tracing at 100% most calls
 * find theirs here and compare ~80 bytes instead of decoding two header values.
 */
const recentOrigins: { block: Uint8Array; origin: ReplyOrigin }[] = [];
const RECENT_ORIGINS = 16;
const CACHEABLE_BLOCK = 256;
let nextRecent = 0;

function sameBytes(a: Uint8Array, b: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Which instance answered, and its version, from a reply's origin headers ("" if absent). */
export function replyOrigin(msg: Msg): ReplyOrigin {
  const raw = rawHeaders(msg);
  if (raw === undefined) return NO_ORIGIN;
  if (raw === null) return { instance: msg.headers?.get(Header.instance) ?? "", version: msg.headers?.get(Header.version) ?? "" };
  const { bytes, end } = raw;
  for (const r of recentOrigins) if (r.block.length === end && sameBytes(r.block, bytes, end)) return r.origin;
  const block = bytes.slice(0, end);
  const origin = { instance: headerFromBlock(block, Header.instance), version: headerFromBlock(block, Header.version) };
  if (origin.instance !== "" && end <= CACHEABLE_BLOCK) {
    recentOrigins[nextRecent] = { block, origin };
    nextRecent = (nextRecent + 1) % RECENT_ORIGINS;
  }
  return origin;
}

/**
 * Whether a reply is a plain success by its raw headers: no status code, no error
 * header. Success replies carry only origin headers, and reading them through
 * msg.headers would parse the block into a map on every call.
 */
function plainSuccess(msg: Msg): boolean {
  const raw = rawHeaders(msg);
  if (raw === undefined) return true;
  if (raw === null) return false;
  const { bytes, end } = raw;
  // "NATS/1.0\r\n" exactly: anything after the version is a status (503, 408...).
  if (bytes[8] !== CR) return false;
  for (let pos = lineAfter(bytes, 0, end); pos > 0; pos = lineAfter(bytes, pos, end)) {
    if (keyAt(bytes, pos, end, ERROR_CODE_KEY) || keyAt(bytes, pos, end, SERVICE_ERROR_KEY)) return false;
  }
  return true;
}

const NO_RESPONDERS_STATUS = textEncoder.encode("NATS/1.0 503");
const MESH_HEADER = textEncoder.encode("Mesh-");

/**
 * Whether a reply is the only answer its request gets: the server's no-responders
 * status, or a mesh endpoint's answer (ok or error, its first header is a `Mesh-` one),
 * which answers each request once. Anything else (a plain NATS responder, the services
 * framework's own error reply) may be one of several answers to the same request.
 */
export function onlyAnswer(msg: Msg): boolean {
  const raw = rawHeaders(msg);
  if (raw === undefined) return false;
  if (raw === null) {
    const h = msg.headers;
    return h !== undefined && (h.code === 503 || h.get(Header.instance) !== "" || h.get(Header.errorCode) !== "");
  }
  const { bytes, end } = raw;
  if (keyAt(bytes, 0, end, NO_RESPONDERS_STATUS)) return true;
  const first = lineAfter(bytes, 0, end);
  return first > 0 && keyAt(bytes, first, end, MESH_HEADER);
}

export function errorReplyBody(error: MeshError): Uint8Array {
  try {
    return encodeBody(error.details);
  } catch {
    return EMPTY;
  }
}

/**
 * Turns a reply message into the callee's value, or throws the MeshError it carries.
 * A 503 status from the server means nobody was subscribed.
 */
export function decodeReply(msg: Msg, subject: string): unknown {
  const h = plainSuccess(msg) ? undefined : msg.headers;
  if (h) {
    const code = h.get(Header.errorCode);
    if (code) {
      let details: unknown;
      try {
        details = decodeBody(msg.data);
      } catch {
        details = undefined;
      }
      throw meshErrorFromWire(code, h.get(Header.errorMessage) || code, details);
    }
    if (h.code === 503) throw new MeshError("NO_RESPONDERS", `no instance is listening on ${subject}`);
    if (h.code >= 400) throw new MeshError("UNAVAILABLE", `NATS status ${h.code} ${h.description} on ${subject}`);
    // The NATS services framework answers handler exceptions with these headers.
    const serviceError = h.get("Nats-Service-Error");
    if (serviceError) throw new MeshError("HANDLER_ERROR", serviceError);
  }
  try {
    return decodeBody(msg.data);
  } catch (e) {
    throw new MeshError("BAD_RESPONSE", `reply from ${subject} is not valid msgpack`, { cause: e });
  }
}
