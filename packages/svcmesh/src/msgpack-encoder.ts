// msgpack's Encoder, with ASCII strings written in one pass. The stock encoder walks
// every string twice (once to count its UTF-8 bytes, once to write them): a request's
// map keys and short values are most of what a call encodes, and nearly all ASCII.
// Here an ASCII string is written as it is read, its length known up front; the first
// character outside ASCII hands the string back to the stock code, which rewrites it
// from the same position. The bytes are exactly the stock encoder's.
//
// It overrides `encodeString`, an internal method of @msgpack/msgpack 3.x. Should that
// change, the check below finds out once at startup and the stock encoder is used.
import { Encoder, type EncoderOptions } from "@msgpack/msgpack";

/** The internals of msgpack's Encoder the override uses. */
interface EncoderInternals {
  bytes: Uint8Array;
  pos: number;
  ensureBufferSizeToWrite(size: number): void;
  encodeString(text: string): void;
}

/** Longer strings go to the stock code, which writes them with TextEncoder (native). */
const ONE_PASS_MAX = 200;

class AsciiEncoder extends Encoder {}

const stock = Encoder.prototype as unknown as EncoderInternals;
const stockEncodeString = stock.encodeString;

(AsciiEncoder.prototype as unknown as EncoderInternals).encodeString = function (this: EncoderInternals, text: string): void {
  const n = text.length;
  if (n > ONE_PASS_MAX) return stockEncodeString.call(this, text);
  this.ensureBufferSizeToWrite(2 + n); // header (fixstr or str 8) and one byte per char
  const bytes = this.bytes;
  const start = this.pos;
  let p = n < 32 ? start + 1 : start + 2;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return stockEncodeString.call(this, text); // pos untouched: it starts over
    bytes[p++] = c;
  }
  if (n < 32) bytes[start] = 0xa0 + n;
  else {
    bytes[start] = 0xd9;
    bytes[start + 1] = n;
  }
  this.pos = p;
};

/** Whether the override encodes exactly as the stock encoder does. */
function overrideWorks(): boolean {
  if (typeof stockEncodeString !== "function" || typeof stock.ensureBufferSizeToWrite !== "function") return false;
  const sample = { ok: "ja", näme: ["ünï", "x".repeat(31), "y".repeat(32), "z".repeat(200) + "…", "w".repeat(201), ""], n: { k: "v", big: "é".repeat(300) } };
  try {
    return Buffer.compare(new AsciiEncoder().encode(sample), new Encoder().encode(sample)) === 0;
  } catch {
    return false;
  }
}

/** The encoder to use: the one-pass ASCII one when it checks out, else msgpack's own. */
export const BodyEncoder: new (options?: EncoderOptions) => Encoder = overrideWorks() ? AsciiEncoder : Encoder;
