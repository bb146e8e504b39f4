// Token buckets with explicit clock readings (ms): no sleeps, no network.
// Imported from source: the bucket is internal to the package and has no dependencies.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TokenBucket, TokenBucketMap, bucketLimit } from "../src/limits/token-bucket.ts";

describe("bucketLimit", () => {
  test("burst defaults to rps, never below one token", () => {
    assert.deepEqual(bucketLimit(10), { rps: 10, burst: 10 });
    assert.deepEqual(bucketLimit(10, 25), { rps: 10, burst: 25 });
    assert.deepEqual(bucketLimit(0.5), { rps: 0.5, burst: 1 });
  });
});

describe("TokenBucket", () => {
  test("starts full, lets `burst` through at once, then refuses", () => {
    const b = new TokenBucket(bucketLimit(10, 3), 1000);
    assert.equal(b.take(1000), true);
    assert.equal(b.take(1000), true);
    assert.equal(b.take(1000), true);
    assert.equal(b.take(1000), false);
    assert.equal(b.take(1000), false);
  });

  test("refills lazily at rps, capped at burst", () => {
    const b = new TokenBucket(bucketLimit(10, 2), 0);
    assert.ok(b.take(0) && b.take(0));
    assert.equal(b.take(50), false, "half a token after 50 ms at 10 rps");
    assert.equal(b.take(100), true, "one token after 100 ms");
    assert.equal(b.take(100), false);
    assert.equal(b.available(10_000), 2, "a long pause banks no more than burst");
    assert.ok(b.take(10_000) && b.take(10_000));
    assert.equal(b.take(10_000), false);
  });

  test("sustained rate over a long window is rps (plus the initial burst)", () => {
    const b = new TokenBucket(bucketLimit(20, 5), 0);
    let admitted = 0;
    for (let t = 0; t <= 10_000; t += 1) if (b.take(t)) admitted++; // 1000 offers per second
    assert.equal(admitted, 5 + 20 * 10);
  });

  test("retryAfterMs says when the next token comes", () => {
    const b = new TokenBucket(bucketLimit(4, 1), 0);
    assert.equal(b.retryAfterMs(0), 0);
    assert.ok(b.take(0));
    assert.equal(b.retryAfterMs(0), 250);
    assert.equal(b.retryAfterMs(100), 150);
    assert.equal(b.retryAfterMs(249.5), 1, "never 0 while no token is there");
    assert.equal(b.retryAfterMs(250), 0);
    assert.equal(b.take(249), false);
    assert.equal(b.take(250), true);
  });

  test("a clock reading older than the last one does not move time back", () => {
    const b = new TokenBucket(bucketLimit(10, 1), 1000);
    assert.ok(b.take(1000));
    assert.equal(b.take(500), false);
    assert.equal(b.take(1099), false);
    assert.equal(b.take(1100), true);
  });

  test("refund gives a token back, never past burst", () => {
    const b = new TokenBucket(bucketLimit(1, 2), 0);
    assert.ok(b.take(0) && b.take(0));
    b.refund();
    assert.equal(b.take(0), true);
    b.refund();
    b.refund();
    b.refund();
    assert.equal(b.available(0), 2);
  });

  test("buckets sharing a limit object follow a change of its fields at their next use", () => {
    const shared = bucketLimit(10, 10);
    const a = new TokenBucket(shared, 0);
    const c = new TokenBucket(shared, 0);
    shared.rps = 5;
    shared.burst = 5;
    assert.equal(a.available(0), 5, "clamped to the new burst");
    let n = 0;
    while (c.take(0) && n < 100) n++;
    assert.equal(n, 5);
    assert.equal(c.retryAfterMs(0), 200, "refills at the new rps");
  });

  test("idle means full: forgetting the bucket would change nothing", () => {
    const b = new TokenBucket(bucketLimit(10, 2), 0);
    assert.equal(b.idle(0), true);
    assert.ok(b.take(0));
    assert.equal(b.idle(0), false);
    assert.equal(b.idle(99), false);
    assert.equal(b.idle(100), true);
  });

  test("the default clock is performance.now()", () => {
    const b = new TokenBucket(bucketLimit(1, 1));
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    assert.ok(b.retryAfterMs() > 0);
  });
});

describe("TokenBucketMap", () => {
  const limit = bucketLimit(1, 1);

  test("one bucket per key, made on first use", () => {
    const m = new TokenBucketMap();
    assert.equal(m.get("a"), undefined);
    const a = m.bucket("a", limit, 0);
    assert.equal(m.bucket("a", limit, 0), a);
    assert.notEqual(m.bucket("b", limit, 0), a);
    assert.equal(m.size, 2);
    assert.ok(a.take(0));
    assert.equal(m.bucket("a", limit, 0).take(0), false);
    assert.equal(m.bucket("b", limit, 0).take(0), true, "keys do not share tokens");
  });

  test("a flood of distinct keys stays within maxKeys; keys beyond it share one overflow bucket", () => {
    const m = new TokenBucketMap({ maxKeys: 100, sweepIntervalMs: 1000 });
    let admitted = 0;
    for (let i = 0; i < 10_000; i++) if (m.bucket(`caller-${i}`, limit, 0).take(0)) admitted++;
    assert.equal(m.size, 100);
    assert.equal(admitted, 101, "100 own buckets, then one shared token for the other 9 900 keys");
  });

  test("idle buckets are swept to make room, at most once per interval", () => {
    const m = new TokenBucketMap({ maxKeys: 3, sweepIntervalMs: 1000 });
    for (const k of ["a", "b", "c"]) assert.ok(m.bucket(k, limit, 0).take(0));
    const overflow = m.bucket("d", limit, 0); // nothing idle yet: swept 0, overflow
    assert.equal(m.get("d"), undefined);
    assert.equal(m.bucket("e", limit, 500), overflow, "no new sweep within the interval");
    assert.ok(m.get("b")!.take(1000) === true);
    const d = m.bucket("d", limit, 1000); // a and c are full again at 1000 ms: swept; b just took a token
    assert.notEqual(d, overflow);
    assert.equal(m.get("a"), undefined);
    assert.equal(m.get("c"), undefined);
    assert.ok(m.get("b"));
    assert.equal(m.size, 2);
  });

  test("sweeping loses nothing: a swept key comes back to a full bucket, as it would have been", () => {
    const m = new TokenBucketMap({ maxKeys: 1, sweepIntervalMs: 0 });
    const l = bucketLimit(10, 3);
    const a = m.bucket("a", l, 0);
    assert.ok(a.take(0));
    assert.equal(m.sweep(100), 1, "full again after 100 ms at 10 rps");
    assert.equal(m.bucket("a", l, 100).available(100), 3);
  });

  test("pinned keys are never swept and do not count against maxKeys", () => {
    const m = new TokenBucketMap({ maxKeys: 1, sweepIntervalMs: 0 });
    const p = m.pin("named", bucketLimit(5), 0);
    assert.equal(m.bucket("x", limit, 0) === m.get("x"), true, "room for one unpinned key besides the pinned one");
    assert.equal(m.sweep(10_000), 1, "x swept, named kept");
    assert.equal(m.get("named"), p);
    assert.equal(m.pin("named", bucketLimit(9), 0), p, "pinning again keeps the bucket and updates its limit");
    assert.equal(p.limit.rps, 9);
    assert.equal(m.delete("named"), true);
    assert.equal(m.size, 0);
  });
});
