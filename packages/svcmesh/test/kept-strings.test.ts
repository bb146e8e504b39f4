// Strings kept past a request must not keep the text they were read from. In V8 a slice
// of 13 characters or more holds on to the whole string it was sliced from, and header
// values are slices of their decoded header block (wire.ts): kept as they are, a caller
// name or a token from a large block would keep the block. The caches copy what they keep.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { newIdentity } from "../src/identity/keys.ts";
import { createSigner, createVerifier } from "../src/identity/token.ts";
import { TokenBucketMap, bucketLimit } from "../src/limits/token-bucket.ts";
import { readRequestMeta, type RequestMeta } from "../src/wire.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const TEXTS = 40;
const TEXT_CHARS = 1_000_000;

/** `value` at the start of a text of about a megabyte, and the slice of it that a reader would keep. */
function sliceOfLargeText(value: string): string {
  const text = `${value};${"p".repeat(TEXT_CHARS)}`;
  return text.slice(0, value.length);
}

/** Heap growth (bytes, after full GCs) while `fn` runs and its results stay reachable. */
function heapGrowth(fn: () => unknown): number {
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = fn();
  gc();
  const growth = process.memoryUsage().heapUsed - before;
  assert.ok(kept !== undefined);
  return growth;
}

test("a rate-limit bucket's key does not keep the text it was sliced from", () => {
  const limit = bucketLimit(10);
  const growth = heapGrowth(() => {
    const buckets = new TokenBucketMap();
    for (let i = 0; i < TEXTS; i++) buckets.bucket(sliceOfLargeText(`a-caller-named-${i}`), limit, 0);
    assert.equal(buckets.size, TEXTS);
    return buckets;
  });
  // Kept, 40 texts of a megabyte would be 40 MB.
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1024 / 1024).toFixed(1)} MB`);
});

test("a verified token in the verifier's cache does not keep the text it was sliced from", () => {
  const caller = newIdentity();
  const verifier = createVerifier({ keys: new Map([["claims", caller.publicKey]]), service: "payments" });
  const signer = createSigner("claims", caller.seed);
  const now = Date.now();
  const growth = heapGrowth(() => {
    for (let i = 0; i < TEXTS; i++) {
      // A token per request time: each is a new cache entry.
      assert.equal(verifier.verify(sliceOfLargeText(signer.tokenFor("payments", now + i * 60_000)), now + i * 60_000).caller, "claims");
    }
    assert.equal(verifier.cacheSize, TEXTS);
    return verifier;
  });
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1024 / 1024).toFixed(1)} MB`);
});

test("request metadata read from a large header block keeps none of the block, and reads as from a small one", () => {
  const values = { caller: "a-caller-with-a-long-name", requestId: "r-0123456789abcdef", token: "t".repeat(40), policy: "7 sha256-ü0123456789", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracestate: "vendor=opaque-value-é" };
  const lines = ["Mesh-Caller", "Mesh-Request-Id", "Mesh-Token", "Mesh-Policy", "traceparent", "tracestate"].map((k, i) => `${k}: ${Object.values(values)[i]}`);
  const received = (padding: string) => {
    const block = `NATS/1.0\r\n${lines.join("\r\n")}\r\nX-Padding: ${padding}\r\n\r\n`;
    const bytes = Buffer.from(`${block}BODY`);
    return { _msg: { hdr: Buffer.byteLength(block) }, _rdata: bytes } as never;
  };
  const small = readRequestMeta(received("p"), 0, 1);
  const kept: RequestMeta[] = [];
  const growth = heapGrowth(() => {
    for (let i = 0; i < TEXTS; i++) kept.push(readRequestMeta(received("p".repeat(TEXT_CHARS)), 0, 1));
    return kept;
  });
  for (const meta of kept) assert.deepEqual({ ...meta }, { ...small });
  assert.deepEqual({ ...small }, { ...values, deadline: 1 });
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1024 / 1024).toFixed(1)} MB`);
});
