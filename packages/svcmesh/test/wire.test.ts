import assert from "node:assert/strict";
import { test } from "node:test";
import { Decoder, Encoder } from "@msgpack/msgpack";
import fc from "fast-check";
import { ErrorCode, MeshError, isMeshError, retryableCodes } from "svcmesh";
import { BodyDecoder, BodyEncoder, RequestHeaders, subjectNumber, decodeBody, encodeBody, headerFromBlock, headerValue, hpubFrame, readRequestMeta } from "svcmesh/internal";

/** What a codec call gave: its value, or its error's message (so two codecs compare on either). */
function outcome(run: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: run() };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

test("bodies round-trip through msgpack; empty is undefined", () => {
  const v = { claimId: "C1", usd: 40.5, tags: ["a"], nested: { ok: true } };
  assert.deepEqual(decodeBody(encodeBody(v)), v);
  assert.equal(encodeBody(undefined).length, 0);
  assert.equal(decodeBody(new Uint8Array(0)), undefined);
  assert.throws(() => decodeBody(new Uint8Array([0xc1])));
});

test("a request is one HPUB frame: protocol line, header block, body, CRLF; fresh bytes per call", () => {
  const headers = new RequestHeaders("claims-ünï");
  const body = encodeBody({ a: 1 });
  const first = hpubFrame("svc.pay.v1.go", "_INBOX.x.1", headers.head, headers.tail(1234, "abc.1"), body);
  const second = hpubFrame("svc.pay.v1.go", "_INBOX.x.2", headers.head, headers.tail(5678, "abc.2", "Mesh-Token: t\r\n"), body);
  assert.notEqual(first.bytes.buffer === second.bytes.buffer && first.bytes.byteOffset === second.bytes.byteOffset, true, "nats.js may still hold the first frame until it flushes");
  const block = "NATS/1.0\r\nMesh-Caller: claims-ünï\r\nMesh-Deadline: 1234\r\nMesh-Request-Id: abc.1\r\n\r\n";
  const hlen = Buffer.byteLength(block);
  const text = Buffer.from(first.bytes).toString("latin1");
  assert.equal(text.slice(0, first.headerStart), `HPUB svc.pay.v1.go _INBOX.x.1 ${hlen} ${hlen + body.length}\r\n`);
  assert.equal(new TextDecoder().decode(first.bytes.subarray(first.headerStart, first.bodyStart)), block);
  assert.deepEqual(decodeBody(first.bytes.subarray(first.bodyStart, first.bodyEnd)), { a: 1 });
  assert.equal(text.slice(first.bodyEnd), "\r\n");
  assert.equal(first.bytes.length, first.bodyEnd + 2);
  const secondBlock = second.bytes.subarray(second.headerStart, second.bodyStart);
  assert.equal(headerFromBlock(secondBlock, "Mesh-Caller"), "claims-ünï");
  assert.equal(headerFromBlock(secondBlock, "Mesh-Deadline"), "5678");
  assert.equal(headerFromBlock(secondBlock, "Mesh-Request-Id"), "abc.2");
  assert.equal(headerFromBlock(secondBlock, "Mesh-Token"), "t");
});

test("a frame counts subject bytes, not characters, and may have no reply subject or body", () => {
  const head = new TextEncoder().encode("NATS/1.0\r\nMesh-Instance: i\r\n\r\n");
  const f = hpubFrame("_INBOX_ünï.r1", "", head, "", new Uint8Array(0));
  const line = `HPUB _INBOX_ünï.r1 ${head.length} ${head.length}\r\n`;
  assert.equal(f.headerStart, Buffer.byteLength(line));
  assert.equal(new TextDecoder().decode(f.bytes), `${line}NATS/1.0\r\nMesh-Instance: i\r\n\r\n\r\n`);
  assert.equal(f.bodyStart, f.bodyEnd);
});

test("bodies decode as msgpack's own decoder decodes them, strings made natively (msgpack-decoder.ts)", () => {
  assert.equal(BodyDecoder.name, "NativeStringDecoder", "the override checks out against this msgpack version");
  const stock = new Decoder();
  const samples = [
    { claimId: "C-2026-0012345", claimant: "Zoë Ünïcode", notes: "", long: "é".repeat(150), longer: "x".repeat(70_000), tags: ["a", "ß", "😀"] },
    ["", "a", "a".repeat(31), "a".repeat(32), "a".repeat(255), "a".repeat(256)],
    { nested: { deeper: { key: "value", "ключ": "значение" } } },
  ];
  // The same value, or the same error (a "__proto__" key is refused by both).
  const same = (v: unknown) => assert.deepEqual(outcome(() => decodeBody(encodeBody(v))), outcome(() => stock.decode(encodeBody(v))));
  for (const v of samples) same(v);
  same(JSON.parse('{"__proto__": []}'));
  fc.assert(fc.property(fc.jsonValue(), same), { numRuns: 500 });
  // Truncated and over-long input still fails as before.
  assert.throws(() => decodeBody(encodeBody({ s: "truncated string" }).subarray(0, 8)), /Insufficient data/);
});

test("bodies encode to exactly msgpack's own bytes, ASCII strings written in one pass (msgpack-encoder.ts)", () => {
  assert.equal(BodyEncoder.name, "AsciiEncoder", "the override checks out against this msgpack version");
  const stock = new Encoder({ ignoreUndefined: true });
  const mine = new BodyEncoder({ ignoreUndefined: true });
  // The same bytes, or the same error.
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
  const same = (v: unknown) => assert.deepEqual(outcome(() => hex(mine.encode(v))), outcome(() => hex(stock.encode(v))));
  const samples = [
    // Around the fixstr / str 8 / one-pass limits, ASCII and not, a non-ASCII char last.
    ["", "a", "a".repeat(31), "a".repeat(32), "a".repeat(200), "a".repeat(201), "a".repeat(255), "a".repeat(256), "a".repeat(30) + "é", "a".repeat(199) + "é", "\u007f", "\u0080"],
    { claimId: "C-2026-0012345", claimant: "Zoë Ünïcode", "ключ": "значение", emoji: "😀", lone: "\ud800", skipped: undefined, n: 1.5 },
  ];
  for (const v of samples) same(v);
  fc.assert(fc.property(fc.jsonValue(), same), { numRuns: 500 });
  fc.assert(fc.property(fc.array(fc.string({ unit: "binary", maxLength: 300 })), same), { numRuns: 300 });
  // A long run of calls keeps to one buffer position: each encode starts afresh.
  for (let i = 0; i < 3; i++) same({ grow: "x".repeat(5000 * i), after: "é" });
  assert.deepEqual(decodeBody(encodeBody({ a: "Zoë", b: "plain" })), { a: "Zoë", b: "plain" });
});

test("a reply token is read from the subject's bytes, or from its text when nats.js's internals are absent", () => {
  const prefix = "_INBOX.abc.";
  const viaBytes = (subject: string) => subjectNumber({ _msg: { subject: new TextEncoder().encode(subject) } } as never, prefix.length);
  const viaText = (subject: string) => subjectNumber({ subject } as never, prefix.length);
  for (const read of [viaBytes, viaText]) {
    assert.equal(read(`${prefix}0`), 0);
    assert.equal(read(`${prefix}123456`), 123456);
    assert.equal(read(`${prefix}999999999999999`), 999999999999999);
    for (const bad of [prefix, `${prefix}12a`, `${prefix}-1`, `${prefix}1234567890123456`, "_INBOX"]) assert.equal(read(bad), -1, bad);
  }
  // A prefix that is not ASCII is counted in bytes, as the subject arrives.
  const wide = "_INBOX_ünï.abc.";
  assert.equal(subjectNumber({ _msg: { subject: new TextEncoder().encode(`${wide}42`) } } as never, Buffer.byteLength(wide)), 42);
  assert.equal(subjectNumber({ subject: `${wide}42` } as never, Buffer.byteLength(wide)), 42);
});

test("header values never carry CR/LF and stay bounded", () => {
  assert.equal(headerValue("a\r\nb\nc"), "a b c");
  assert.ok(headerValue("x".repeat(5000)).length <= 1024);
});

test("every code has a retryable entry and MeshError is recognised by brand", () => {
  for (const code of Object.values(ErrorCode)) assert.equal(typeof retryableCodes[code], "boolean");
  const e = new MeshError("TIMEOUT", "late");
  assert.ok(isMeshError(e));
  assert.equal(e.retryable, true);
  assert.ok(!isMeshError(new Error("x")));
  assert.ok(!isMeshError({ code: "TIMEOUT" }));
  assert.deepEqual(JSON.parse(JSON.stringify(new MeshError("BAD_REQUEST", "no", { details: { a: 1 } }))), { code: "BAD_REQUEST", message: "no", details: { a: 1 } });
});

test("header blocks are scanned like nats.js reads them", () => {
  const bytes = (t: string) => new TextEncoder().encode(t);
  const block = "NATS/1.0\r\nMesh-Caller-Extra: no\r\nMesh-Caller:  claims \r\nMesh-Deadline: 99\r\nMesh-Caller: second\r\n\r\n";
  assert.equal(headerFromBlock(bytes(block), "Mesh-Caller"), "claims");
  assert.equal(headerFromBlock(bytes(block), "Mesh-Deadline"), "99");
  assert.equal(headerFromBlock(bytes(block), "Mesh-Request-Id"), "");
  assert.equal(headerFromBlock(bytes("NATS/1.0 503\r\n\r\n"), "Mesh-Caller"), "");
  assert.equal(headerFromBlock(bytes(""), "Mesh-Caller"), "");
  assert.equal(headerFromBlock(bytes("NATS/1.0\r\nMesh-Caller: x"), "Mesh-Caller"), "x");
  assert.equal(headerFromBlock(bytes("NATS/1.0\r\nMesh-Caller:"), "Mesh-Caller"), "");
});

// Request metadata from a raw header block (readRequestMeta's fast path), against a
// plain reading of the same block: each field is the first non-empty value of its exact
// key at a line's start, spaces trimmed; the deadline a positive number, else the default.
const META_KEYS = {
  caller: "Mesh-Caller", deadline: "Mesh-Deadline", requestId: "Mesh-Request-Id", token: "Mesh-Token",
  policy: "Mesh-Policy", traceparent: "traceparent", tracestate: "tracestate",
} as const;

function plainReading(block: string, now: number, defaultMs: number): Record<string, string | number> {
  const meta: Record<string, string> = { caller: "", deadline: "", requestId: "", token: "", policy: "", traceparent: "", tracestate: "" };
  for (const line of block.split("\r\n").slice(1)) {
    for (const [field, key] of Object.entries(META_KEYS)) {
      if (meta[field] === "" && line.startsWith(`${key}:`)) meta[field] = line.slice(key.length + 1).replace(/^ +| +$/g, "");
    }
  }
  const d = Number(meta.deadline);
  return { ...meta, deadline: meta.deadline !== "" && Number.isFinite(d) && d > 0 ? d : now + defaultMs };
}

/** A received message as nats.js 2.x holds it: the raw bytes (header block, then body) and the block's length. */
function received(block: string, plainArray: boolean): { _msg: { hdr: number }; _rdata: Uint8Array } {
  const bytes = Buffer.from(`${block}BODY`);
  return { _msg: { hdr: Buffer.byteLength(block) }, _rdata: plainArray ? new Uint8Array(bytes) : bytes };
}

test("request metadata is read from a raw header block as a plain reading of it reads", () => {
  const key = fc.constantFrom(...Object.values(META_KEYS), "Mesh-Caller-Extra", "mesh-caller", "Mesh-", "Mesh-X", "tracestatex", "t", "X-Other", "M");
  const value = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: "grapheme", maxLength: 12 }),
    fc.constantFrom("", " ", "  1796520084776 ", "0", "-5", "1e3", "abc", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
  ).map((v) => v.replace(/[\r\n]/g, ""));
  const line = fc.oneof(fc.tuple(key, fc.constantFrom(":", ": ", ":  "), value).map(([k, sep, v]) => `${k}${sep}${v}`), value);
  fc.assert(
    fc.property(fc.array(line, { maxLength: 12 }), fc.boolean(), (lines, plainArray) => {
      const block = `NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`;
      const got = readRequestMeta(received(block, plainArray) as never, 1000, 50);
      assert.deepEqual({ ...got }, plainReading(block, 1000, 50), JSON.stringify(block));
    }),
    { numRuns: 2000 },
  );
  // The last line may lack its CRLF (the block's end cuts it).
  const cut = "NATS/1.0\r\nMesh-Request-Id: r-1\r\nMesh-Caller:  a b ";
  assert.equal(readRequestMeta(received(cut, false) as never, 0, 1).caller, "a b");
  assert.equal(readRequestMeta(received(cut, false) as never, 0, 1).requestId, "r-1");
});
