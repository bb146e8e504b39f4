// W3C traceparent parsing and the mesh's own ids and sampling decision.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { formatTraceparent, newSpanId, newTraceId, notSampled, parseTraceparent, sampledAt, traceHeaderLines, traceIdOf } from "../src/trace/context.ts";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

test("traceparent: valid headers parse, malformed and all-zero ones do not", () => {
  assert.deepEqual(parseTraceparent(VALID, "k=v"), { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: 1, state: "k=v" });
  assert.equal(formatTraceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1), VALID);
  for (const bad of [
    "", "garbage", VALID.toUpperCase(), VALID + "-extra", "ff" + VALID.slice(2),
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "x".repeat(600),
  ]) assert.equal(parseTraceparent(bad), undefined, bad);
  assert.equal(parseTraceparent("01" + VALID.slice(2) + "-future")?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "later versions may add fields");
  assert.equal(traceIdOf(VALID), "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(traceIdOf("00-NOT-HEX-AT-ALL-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "");
});

// The spec's grammar as a regular expression: the reference the hand-written scanner must agree with.
const REFERENCE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
function referenceParse(text: string): string | undefined {
  const m = text.length >= 55 && text.length <= 512 ? REFERENCE.exec(text) : null;
  if (!m || m[1] === "ff" || (m[1] === "00" && text.length !== 55)) return undefined;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  return `${m[2]}/${m[3]}/${parseInt(m[4]!, 16)}`;
}

test("traceparent: the scanner accepts exactly what the spec's grammar accepts", () => {
  // Valid headers with a few characters replaced, cut or extended: near misses are what matter.
  const alphabet = fc.constantFrom(..."0123456789abcdefABCDEF-xz ".split(""));
  const mutated = fc.tuple(
    fc.constantFrom(VALID, "01" + VALID.slice(2), "cc" + VALID.slice(2) + "-x", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    fc.array(fc.tuple(fc.nat(60), alphabet), { maxLength: 3 }),
    fc.integer({ min: -3, max: 3 }),
  ).map(([base, edits, resize]) => {
    const chars = base.split("");
    for (const [at, c] of edits) chars[at % chars.length] = c;
    const text = chars.join("");
    return resize < 0 ? text.slice(0, resize) : text + "-".repeat(resize);
  });
  fc.assert(fc.property(fc.oneof(mutated, fc.string({ maxLength: 70 })), (text) => {
    const parsed = parseTraceparent(text);
    assert.equal(parsed && `${parsed.traceId}/${parsed.spanId}/${parsed.flags}`, referenceParse(text), text);
    assert.equal(traceIdOf(text) !== "", text.length >= 55 && text[2] === "-" && /^[0-9a-f]{32}$/.test(text.slice(3, 35)), text);
  }), { numRuns: 20_000, seed: 52 });
});

test("notSampled: the flags of a well-shaped header, without checking its ids", () => {
  for (const flags of ["00", "02", "0e", "fe"]) assert.equal(notSampled(VALID.slice(0, 53) + flags), true, flags);
  for (const flags of ["01", "03", "ff", "zz", "0"]) assert.equal(notSampled(VALID.slice(0, 53) + flags), false, flags);
  for (const bad of ["", "garbage", "ff" + VALID.slice(2, 53) + "00", VALID.slice(0, 35) + "x" + VALID.slice(36, 53) + "00"]) assert.equal(notSampled(bad), false, bad);
  // Every valid header: notSampled agrees with the full parse.
  for (let i = 0; i < 200; i++) {
    const text = formatTraceparent(newTraceId(), newSpanId(), i & 0xff);
    assert.equal(notSampled(text), (parseTraceparent(text)!.flags & 1) === 0, text);
  }
});

test("ids are hex, non-zero and different; header lines carry no CR/LF from tracestate", () => {
  // Ids are cut from a pool of random hex refilled every 8 KiB of bytes: 5000 calls' worth
  // crosses many refills, with trace and span ids interleaved as calls make them.
  const traceIds = new Set<string>();
  const spanIds = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const t = newTraceId();
    const s = newSpanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s, /^[0-9a-f]{16}$/);
    traceIds.add(t);
    spanIds.add(s);
  }
  assert.equal(traceIds.size, 5000);
  assert.equal(spanIds.size, 5000);
  assert.equal(traceHeaderLines("a".repeat(32), "b".repeat(16), 0, "x=1\r\nEvil: yes"), `traceparent: 00-${"a".repeat(32)}-${"b".repeat(16)}-00\r\ntracestate: x=1Evil: yes\r\n`);
});

test("sampling is decided by the trace id: the same for every hop, at about the rate", () => {
  const ids = Array.from({ length: 20_000 }, () => newTraceId());
  const kept = ids.filter((id) => sampledAt(id, 0.1)).length;
  assert.ok(kept > 1_600 && kept < 2_400, `kept ${kept} of 20000 at 0.1`);
  for (const id of ids.slice(0, 100)) assert.equal(sampledAt(id, 0.1), sampledAt(id, 0.1));
  assert.ok(ids.every((id) => sampledAt(id, 1)));
  assert.ok(!ids.some((id) => sampledAt(id, 0)));
  // The decision is the last 8 hex digits as a fraction of 2^32, whoever made the id.
  for (const id of [...ids.slice(0, 2000), "f".repeat(32), "0".repeat(24) + "19999999", "A".repeat(24) + "1999999A"]) {
    const fraction = parseInt(id.slice(24), 16) / 2 ** 32;
    for (const rate of [0.01, 0.1, 0.5]) assert.equal(sampledAt(id, rate), fraction < rate, `${id} at ${rate}`);
  }
});
