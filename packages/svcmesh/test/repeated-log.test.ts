// RepeatedLog holds back repeats of one failure: retry loops log once a minute.
import assert from "node:assert/strict";
import { test } from "node:test";
import { RepeatedLog } from "../src/logger.ts";

test("repeats of one failure are held back for the interval, then let through with the count held", () => {
  const log = new RepeatedLog(60_000);
  assert.deepEqual(log.admit("refused", 0), { held: 0 });
  assert.equal(log.admit("refused", 1_000), undefined);
  assert.equal(log.admit("refused", 59_999), undefined);
  assert.deepEqual(log.admit("other failure", 2_000), { held: 0 }, "another failure is its own");
  assert.deepEqual(log.admit("refused", 60_000), { held: 2 });
});

test("texts that differ only in the inbox they name (a fresh one per request) are one failure", () => {
  const log = new RepeatedLog(60_000);
  const refused = (inbox: string) => `opening the policy bucket: 'Permissions Violation for Subscription to "${inbox}.*"'`;
  assert.deepEqual(log.admit(refused("_INBOX_payments.BDDZ7NV0M2K3SOKFEXCCK3"), 0), { held: 0 });
  assert.equal(log.admit(refused("_INBOX_payments.QX91KD0AJ2NNV7LTRWE0PZ"), 250), undefined);
  assert.equal(log.admit(refused("_INBOX.8MZ2R1"), 500), undefined);
});
