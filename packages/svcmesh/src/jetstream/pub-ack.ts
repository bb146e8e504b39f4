// What a JetStream publish ack says. acked-publisher.ts reads one per stored message,
// so one per audited call. The acks nats-server 2.9 writes for a stored message, by
// hand and always alike:
//   {"stream":"<name>", ["domain":"<domain>", ]"seq":<n>[,"duplicate": true]}
// (with or without the spaces). Those are read from the bytes, strictly; anything else
// (error acks start `{"error"`) goes through JSON.parse. The test holds both readings
// to the same answer for any text.
import { keyAt } from "../wire.js";

const decoder = new TextDecoder();
const STREAM_KEY = bytesOf('{"stream":');
const DOMAIN_KEY = bytesOf('"domain":');
const SEQ_KEY = bytesOf('"seq":');
const DUPLICATE_KEY = bytesOf('"duplicate":');
const TRUE = bytesOf("true");
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const SPACE = 0x20;
const ZERO = 0x30;
const NINE = 0x39;
const CLOSE = 0x7d;

function bytesOf(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** The position after `word` if `data` has it at `at`, else -1. */
function after(data: Uint8Array, at: number, word: Uint8Array): number {
  return at >= 0 && keyAt(data, at, data.length, word) ? at + word.length : -1;
}

/** The position after a JSON string without escapes or control characters at `at`, else -1. */
function afterPlainString(data: Uint8Array, at: number): number {
  if (at < 0 || data[at] !== QUOTE) return -1;
  for (let i = at + 1; i < data.length; i++) {
    const c = data[i]!;
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH || c < SPACE) return -1;
  }
  return -1;
}

/** The position after a comma and an optional space at `at`, else -1. */
function afterComma(data: Uint8Array, at: number): number {
  if (at < 0 || data[at] !== COMMA) return -1;
  return data[at + 1] === SPACE ? at + 2 : at + 1;
}

/** The plain acks of a stored message, read without a string; undefined for anything else. */
function plainAck(data: Uint8Array): "stored" | "duplicate" | undefined {
  let at = afterComma(data, afterPlainString(data, after(data, 0, STREAM_KEY)));
  const domain = afterComma(data, afterPlainString(data, after(data, at, DOMAIN_KEY)));
  if (domain >= 0) at = domain;
  at = after(data, at, SEQ_KEY);
  // A JSON number without sign, fraction or leading zero.
  if (at < 0 || !(data[at]! >= ZERO && data[at]! <= NINE)) return undefined;
  if (data[at++] !== ZERO) while (data[at]! >= ZERO && data[at]! <= NINE) at++;
  let outcome: "stored" | "duplicate" = "stored";
  const duplicate = after(data, afterComma(data, at), DUPLICATE_KEY);
  if (duplicate >= 0) {
    at = after(data, data[duplicate] === SPACE ? duplicate + 1 : duplicate, TRUE);
    outcome = "duplicate";
  }
  return at >= 0 && at === data.length - 1 && data[at] === CLOSE ? outcome : undefined;
}

/**
 * What a JetStream publish ack says: stored, duplicate (stored before), or retry (no
 * responders while a leader is elected, or an error such as "stream not found").
 */
export function ackOutcome(data: Uint8Array): "stored" | "duplicate" | "retry" {
  if (data.length === 0) return "retry"; // a status-only reply: 503 no responders
  const plain = plainAck(data);
  if (plain !== undefined) return plain;
  try {
    const ack = JSON.parse(decoder.decode(data)) as { error?: unknown; seq?: unknown; duplicate?: unknown };
    if (ack.error !== undefined || typeof ack.seq !== "number") return "retry";
    return ack.duplicate === true ? "duplicate" : "stored";
  } catch {
    return "retry";
  }
}
