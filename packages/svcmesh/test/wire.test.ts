import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode, MeshError, isMeshError, retryableCodes } from "svcmesh";
import { RequestHeaderWriter, decodeBody, encodeBody, headerFromBlock, headerValue } from "svcmesh/internal";

test("bodies round-trip through msgpack; empty is undefined", () => {
  const v = { claimId: "C1", usd: 40.5, tags: ["a"], nested: { ok: true } };
  assert.deepEqual(decodeBody(encodeBody(v)), v);
  assert.equal(encodeBody(undefined).length, 0);
  assert.equal(decodeBody(new Uint8Array(0)), undefined);
  assert.throws(() => decodeBody(new Uint8Array([0xc1])));
});

test("request headers are a valid NATS header block, fresh bytes per call", () => {
  const writer = new RequestHeaderWriter("claims-ünï");
  const first = writer.next(1234, "abc.1").encode();
  const second = writer.next(5678, "abc.2").encode();
  assert.notEqual(first, second, "nats.js may still hold the first block until it flushes");
  assert.equal(new TextDecoder().decode(first), "NATS/1.0\r\nMesh-Caller: claims-ünï\r\nMesh-Deadline: 1234\r\nMesh-Request-Id: abc.1\r\n\r\n");
  assert.equal(headerFromBlock(second, "Mesh-Caller"), "claims-ünï");
  assert.equal(headerFromBlock(second, "Mesh-Deadline"), "5678");
  assert.equal(headerFromBlock(second, "Mesh-Request-Id"), "abc.2");
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
