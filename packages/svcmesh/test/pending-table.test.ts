// The transport's table of pending calls (client/pending-table.ts): a ring of slots by
// token, and a map for a call whose slot is still held when its token comes round.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PendingTable } from "../src/client/pending-table.ts";

const entry = (token: number) => ({ token, name: `call ${token}` });

test("entries are found by token, once; unknown and taken tokens find nothing", () => {
  const table = new PendingTable<ReturnType<typeof entry>>(8);
  for (let t = 0; t < 5; t++) table.add(entry(t));
  assert.equal(table.size, 5);
  assert.equal(table.take(3)?.name, "call 3");
  assert.equal(table.take(3), undefined, "taken once");
  assert.equal(table.take(99), undefined);
  assert.equal(table.size, 4);
});

test("get finds an entry, in a slot or in the overflow map, without taking it", () => {
  const table = new PendingTable<ReturnType<typeof entry>>(4);
  table.add(entry(1));
  table.add(entry(5)); // slot of 1: overflow
  assert.equal(table.get(1)?.name, "call 1");
  assert.equal(table.get(5)?.name, "call 5");
  assert.equal(table.get(9), undefined, "same slot, not there");
  assert.equal(table.get(2), undefined);
  assert.equal(table.size, 2, "get takes nothing");
  assert.equal(table.take(5)?.token, 5);
  assert.equal(table.get(5), undefined);
});

test("a token whose slot is still held waits in the overflow map and is found there", () => {
  const table = new PendingTable<ReturnType<typeof entry>>(5); // rounded up to 8 slots
  table.add(entry(1)); // a slow call
  for (let t = 2; t < 20; t++) {
    table.add(entry(t));
    assert.equal(table.take(t)?.token, t);
  }
  table.add(entry(9)); // slot of 1 (9 & 7): overflow
  table.add(entry(17)); // same slot again
  assert.equal(table.size, 3);
  assert.equal(table.take(17)?.token, 17);
  assert.equal(table.take(1)?.token, 1);
  assert.equal(table.take(9)?.token, 9);
  assert.equal(table.size, 0);
});

test("tokens past 2^31 and 2^32 index the ring too", () => {
  const table = new PendingTable<ReturnType<typeof entry>>(16);
  for (const t of [2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, 999_999_999_999_999]) table.add(entry(t));
  for (const t of [2 ** 31, 999_999_999_999_999, 2 ** 31 - 1, 2 ** 32 + 5]) assert.equal(table.take(t)?.token, t);
  assert.equal(table.size, 0);
});

test("forEach sees every entry, slots and overflow alike, and may take as it goes", () => {
  const table = new PendingTable<ReturnType<typeof entry>>(4);
  for (let t = 0; t < 10; t++) table.add(entry(t)); // 4 in slots, 6 in the overflow map
  const seen: number[] = [];
  table.forEach((e) => {
    seen.push(e.token);
    if (e.token % 2 === 0) table.take(e.token);
  });
  assert.deepEqual(seen.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(table.size, 5);
  const left: number[] = [];
  table.forEach((e) => left.push(e.token));
  assert.deepEqual(left.sort((a, b) => a - b), [1, 3, 5, 7, 9]);
});
