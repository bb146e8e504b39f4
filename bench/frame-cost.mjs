// What framing one message costs, warm, in this process (no NATS): svcmesh's hpubFrame
// against the same frame written through Buffer#write (the line as UTF-8 after a
// regular-expression check, the header tail as latin1), as frames.ts did before
// 2026-12-06. Two header tails: a core call's (deadline and request id, ~56 characters)
// and an "everything on" call's (plus a token, a policy line and a traceparent, ~350).
//   node bench/frame-cost.mjs [--calls 1000000] [--rounds 5]
import { parseArgs } from "node:util";
import { hpubFrame } from "svcmesh/internal";

const { values } = parseArgs({ options: { calls: { type: "string", default: "1000000" }, rounds: { type: "string", default: "5" } } });
const CALLS = Number(values.calls);
const ROUNDS = Number(values.rounds);

const NON_ASCII = /[^\x00-\x7f]/;
/** The frame as Buffer#write wrote it (frames.ts before 2026-12-06). */
function throughBufferWrite(subject, reply, head, tail, body) {
  const hlen = head.length + tail.length;
  const total = hlen + body.length;
  const line = reply ? `HPUB ${subject} ${reply} ${hlen} ${total}\r\n` : `HPUB ${subject} ${hlen} ${total}\r\n`;
  const headerStart = NON_ASCII.test(line) ? Buffer.byteLength(line) : line.length;
  const bodyStart = headerStart + hlen;
  const bodyEnd = bodyStart + body.length;
  const bytes = Buffer.allocUnsafe(bodyEnd + 2);
  bytes.write(line, 0, "utf8");
  bytes.set(head, headerStart);
  bytes.write(tail, headerStart + head.length, "latin1");
  bytes.set(body, bodyStart);
  bytes[bodyEnd] = 13;
  bytes[bodyEnd + 1] = 10;
  return bytes;
}

const head = Buffer.from("NATS/1.0\r\nMesh-Caller: claims\r\nMesh-Deadline: ");
const body = Buffer.alloc(209, 7); // the bench's claim is 209 bytes of msgpack
const subject = "svc.payments.v2.reimburse";
const token = `eyJ${"A".repeat(180)}`;
// Tails are built per call in the transport (concatenated strings); 64 of them in turn.
const TAILS = {
  core: (k) => `17965${k}123456\r\nMesh-Request-Id: ${"R".repeat(20)}${k}\r\n\r\n`,
  everything: (k) => `17965${k}123456\r\nMesh-Request-Id: ${"R".repeat(20)}${k}\r\nMesh-Token: ${token}\r\nMesh-Policy: 7 abcdef\r\ntraceparent: 00-${"a".repeat(32)}-${"b".repeat(16)}-00\r\n\r\n`,
};
const replies = Array.from({ length: 64 }, (_, k) => `_INBOX.ABCDEFGHIJKLMNOPQRSTUV.${k}`);

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const [name, make] of Object.entries(TAILS)) {
  const tails = Array.from({ length: 64 }, (_, k) => make(k));
  const times = { hpubFrame: [], "Buffer#write": [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [how, frame] of [["hpubFrame", hpubFrame], ["Buffer#write", throughBufferWrite]]) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < CALLS; i++) frame(subject, replies[i & 63], head, tails[i & 63], body);
      times[how].push(Number(process.hrtime.bigint() - t0) / CALLS);
    }
  }
  rows.push(`| ${name} (tail ${tails[0].length} chars) | ${median(times.hpubFrame).toFixed(0)} | ${median(times["Buffer#write"]).toFixed(0)} |`);
}
console.log(`ns per frame, median of ${ROUNDS} rounds of ${CALLS} (the first round is warm-up as much as measurement)\n`);
console.log(["| header tail | hpubFrame | through Buffer#write |", "| --- | ---: | ---: |", ...rows].join("\n"));
