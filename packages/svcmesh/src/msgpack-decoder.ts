// msgpack's Decoder, with string values made by Node's native UTF-8 slice. The stock
// decoder builds strings under 200 bytes in JavaScript, with an array of char codes per
// string: a third of the garbage a service makes per request (a claim has nine short
// strings), and a fifth of its decode time. Map keys still go through msgpack's key
// cache, as in the stock code, and anything unusual (too long, truncated) through it.
//
// It overrides `decodeUtf8String`, an internal method of @msgpack/msgpack 3.x. Should
// that change, the check below finds out once at startup and the stock decoder is used.
import { Decoder, type DecoderOptions, encode } from "@msgpack/msgpack";

/** The internals of msgpack's Decoder the override uses. */
interface DecoderInternals {
  bytes: Uint8Array;
  pos: number;
  maxStrLength: number;
  keyDecoder: { canBeCached(byteLength: number): boolean; decode(bytes: Uint8Array, start: number, byteLength: number): string } | null | undefined;
  stateIsMapKey(): boolean;
  decodeUtf8String(byteLength: number, headerOffset: number): string;
}

const utf8Slice = (Buffer.prototype as unknown as { utf8Slice(this: Uint8Array, start: number, end: number): string }).utf8Slice;

class NativeStringDecoder extends Decoder {}

const stock = Decoder.prototype as unknown as DecoderInternals;
const stockDecodeUtf8String = stock.decodeUtf8String;

(NativeStringDecoder.prototype as unknown as DecoderInternals).decodeUtf8String = function (this: DecoderInternals, byteLength: number, headerOffset: number): string {
  const start = this.pos + headerOffset;
  const end = start + byteLength;
  // Too long or cut short: the stock code throws its own errors.
  if (byteLength > this.maxStrLength || end > this.bytes.byteLength) return stockDecodeUtf8String.call(this, byteLength, headerOffset);
  const keys = this.keyDecoder;
  const text = keys && this.stateIsMapKey() && keys.canBeCached(byteLength) ? keys.decode(this.bytes, start, byteLength) : utf8Slice.call(this.bytes, start, end);
  this.pos = end;
  return text;
};

/** Whether the override decodes as the stock decoder does: keys, short and long strings, ASCII and not, nested. */
function overrideWorks(): boolean {
  if (typeof stockDecodeUtf8String !== "function" || typeof stock.stateIsMapKey !== "function" || typeof utf8Slice !== "function") return false;
  const sample = { ok: "ja", näme: ["ünï", "x".repeat(240) + "…", ""], n: { k: "v" } };
  try {
    return JSON.stringify(new NativeStringDecoder().decode(encode(sample))) === JSON.stringify(sample);
  } catch {
    return false;
  }
}

/** The decoder to use: the native-string one when it checks out, else msgpack's own. */
export const BodyDecoder: new (options?: DecoderOptions) => Decoder = overrideWorks() ? NativeStringDecoder : Decoder;
