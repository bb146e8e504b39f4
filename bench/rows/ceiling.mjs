// Row "ceiling": the cheapest correct request-reply nats.js allows (NATS-NOTES §7). One
// wildcard reply subscription, publish() with a reply subject, a Map of pending calls
// and one coarse timeout sweep, so there is no per-call timer, inbox or async trace.
import { connect, createInbox } from "nats";
import { TIMEOUT_MS, claim, pack, unpack } from "../contract.mjs";
import { SUBJECT } from "./responder.mjs";

export { serve } from "./responder.mjs";

const SWEEP_MS = 50;

/**
 * A pending call. A class, not an object literal: an entry lives as long as its call, and
 * V8 may pretenure a literal's allocation site when many survive a minor GC, after which
 * every entry is made in old space; a caller that drew that ran slower for its whole life
 * (svcmesh's own entries are classes for the same reason: RESULTS.md, 2026-12-06).
 */
class Pending {
  constructor(resolve, reject, deadline) {
    this.resolve = resolve;
    this.reject = reject;
    this.deadline = deadline;
  }
}

/** `subjects`: request subjects to spread the calls over (the services rows' scale steps); default the responder's. */
export async function caller(url, { subjects } = {}) {
  const nc = await connect({ servers: url, name: "bench-ceiling", noAsyncTraces: true });
  let next = 0;
  const subjectOf = subjects === undefined ? () => SUBJECT : () => subjects[next++ % subjects.length];
  const prefix = createInbox() + ".";
  const pending = new Map();
  let seq = 0;

  nc.subscribe(prefix + "*", {
    callback: (err, msg) => {
      if (err) return;
      const token = msg.subject.slice(prefix.length);
      const p = pending.get(token);
      if (!p) return; // late reply after a timeout
      pending.delete(token);
      // The server answers "no responders" with a 503 status on our reply subject.
      if (msg.headers?.code === 503) p.reject(new Error("no responders"));
      else p.resolve(unpack(msg.data));
    },
  });

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [token, p] of pending) {
      if (p.deadline > now) continue;
      pending.delete(token);
      p.reject(new Error("timeout"));
    }
  }, SWEEP_MS);

  return {
    call: () =>
      new Promise((resolve, reject) => {
        const token = (seq++).toString(36);
        pending.set(token, new Pending(resolve, reject, Date.now() + TIMEOUT_MS));
        nc.publish(subjectOf(), pack(claim), { reply: prefix + token });
      }),
    close: () => {
      clearInterval(sweep);
      return nc.close();
    },
  };
}
