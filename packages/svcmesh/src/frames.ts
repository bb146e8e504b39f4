// Whole HPUB frames, written once and handed to nats.js in one piece. nc.publish()
// builds the HPUB line as a string, encodes it, and queues line, header block, body and
// CRLF as four buffers: about a kilobyte of garbage per message, a third of a call's.
// A frame written here is one slice of Node's buffer pool. It goes through nats.js's
// protocol internals (2.x: `protocol.sendCommand`, its `outBytes`/`outMsgs` counters),
// checked once per connection; should they change, nc.publish() sends the same bytes.
import { ErrorCode, NatsError, type NatsConnection } from "nats";
import { asNatsHeaders } from "./wire.js";

/**
 * One message as it goes on the wire: `HPUB <subject> [<reply>] <hlen> <total>\r\n<headers><body>\r\n`.
 * A class, not an object literal: a request's frame lives as long as its call (see
 * Pending in client/transport.ts).
 */
export class Frame {
  constructor(
    readonly bytes: Uint8Array,
    readonly subject: string,
    /** "" for none. */
    readonly reply: string,
    /** Where the header block starts and the body starts and ends in `bytes`. */
    readonly headerStart: number,
    readonly bodyStart: number,
    readonly bodyEnd: number,
  ) {}
}

/**
 * A frame of `head` (the constant start of the header block, "NATS/1.0\r\n..."),
 * `tail` (its per-message ASCII end, closing with the blank line) and `body`, which is
 * copied: it may be a shared encoder buffer.
 *
 * The HPUB line (a subject, a reply subject and two numbers) is written by a JavaScript
 * loop and the tail by Buffer's own latin1Write, not through Buffer#write: its argument
 * checks, two native calls and a regular expression per message cost little when warm
 * but several microseconds on the first message after the process slept (1 request in
 * flight), where a call's latency is mostly such cold code; and a loop over a long tail
 * (a token, a traceparent) is slower than the one native copy even warm
 * (bench/RESULTS.md, 2026-12-06, stop 19).
 */
export function hpubFrame(subject: string, reply: string, head: Uint8Array, tail: string, body: Uint8Array): Frame {
  const hlen = head.length + tail.length;
  const total = hlen + body.length;
  const hlenDigits = digits(hlen);
  const totalDigits = digits(total);
  // The line's length if subject and reply are ASCII (ours are; an inbox prefix is the user's).
  const headerStart = 5 + subject.length + (reply ? reply.length + 1 : 0) + 1 + hlenDigits + 1 + totalDigits + 2;
  // allocUnsafe: every byte is written, here and in withBlockAndBody().
  const bytes = Buffer.allocUnsafe(headerStart + total + 2);
  bytes[0] = 72; // H
  bytes[1] = 80; // P
  bytes[2] = 85; // U
  bytes[3] = 66; // B
  bytes[4] = 32;
  let p = writeAscii(bytes, 5, subject);
  if (p >= 0 && reply) {
    bytes[p++] = 32;
    p = writeAscii(bytes, p, reply);
  }
  if (p < 0) return utf8Frame(subject, reply, head, tail, body);
  bytes[p++] = 32;
  p = writeDecimal(bytes, p, hlen, hlenDigits);
  bytes[p++] = 32;
  p = writeDecimal(bytes, p, total, totalDigits);
  bytes[p++] = 13;
  bytes[p] = 10;
  return withBlockAndBody(bytes, headerStart, subject, reply, head, tail, body);
}

/** The same frame with a subject or reply outside ASCII: the line is written as UTF-8. */
function utf8Frame(subject: string, reply: string, head: Uint8Array, tail: string, body: Uint8Array): Frame {
  const hlen = head.length + tail.length;
  const total = hlen + body.length;
  const line = reply ? `HPUB ${subject} ${reply} ${hlen} ${total}\r\n` : `HPUB ${subject} ${hlen} ${total}\r\n`;
  const headerStart = Buffer.byteLength(line);
  const bytes = Buffer.allocUnsafe(headerStart + total + 2);
  bytes.write(line, 0, "utf8");
  return withBlockAndBody(bytes, headerStart, subject, reply, head, tail, body);
}

/** Writes the header block, the body and the closing CRLF after a line of `headerStart` bytes. */
function withBlockAndBody(bytes: Buffer, headerStart: number, subject: string, reply: string, head: Uint8Array, tail: string, body: Uint8Array): Frame {
  const bodyStart = headerStart + head.length + tail.length;
  const bodyEnd = bodyStart + body.length;
  bytes.set(head, headerStart);
  if (tail.length > 0) latin1Write.call(bytes, tail, headerStart + head.length);
  bytes.set(body, bodyStart);
  bytes[bodyEnd] = 13;
  bytes[bodyEnd + 1] = 10;
  return new Frame(bytes, subject, reply, headerStart, bodyStart, bodyEnd);
}

/** Writes ASCII `text` at `pos`; the position after it, or -1 at the first other character. */
function writeAscii(bytes: Uint8Array, pos: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return -1;
    bytes[pos++] = c;
  }
  return pos;
}

type Latin1Write = (this: Buffer, text: string, offset: number) => number;
/** Buffer's native writer behind Buffer#write(text, offset, "latin1"), without its checks: one byte per character. */
const latin1Write: Latin1Write = (Buffer.prototype as unknown as { latin1Write?: Latin1Write }).latin1Write ?? function (this: Buffer, text: string, offset: number) {
  return this.write(text, offset, "latin1"); // should a Node version lack it
};

/** How many decimal digits a whole number >= 0 has. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes a whole number >= 0 of `width` digits in decimal at `pos`; the position after it. */
function writeDecimal(bytes: Uint8Array, pos: number, n: number, width: number): number {
  const end = pos + width;
  for (let i = end - 1; i >= pos; i--) {
    bytes[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}

/** What of nats.js's protocol handler a frame needs (nats.js 2.x). */
interface ProtocolInternals {
  sendCommand(cmd: Uint8Array): void;
  outBytes: number;
  outMsgs: number;
  noMorePublishing?: boolean;
  info?: { max_payload?: number; headers?: boolean };
}

function protocolOf(nc: NatsConnection): ProtocolInternals | undefined {
  const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
  return p && typeof p.sendCommand === "function" && typeof p.outBytes === "number" && typeof p.outMsgs === "number" ? (p as ProtocolInternals) : undefined;
}

/** Sends frames on one connection, with the checks and counters nc.publish() has. */
export class FramePublisher {
  private readonly protocol: ProtocolInternals | undefined;

  constructor(private readonly nc: NatsConnection) {
    this.protocol = protocolOf(nc);
  }

  /** Throws as nc.publish() would: connection closed or draining, message over max_payload. */
  publish(frame: Frame): void {
    const p = this.protocol;
    if (p === undefined) return this.publishPlain(frame);
    if (this.nc.isClosed()) throw NatsError.errorForCode(ErrorCode.ConnectionClosed);
    if (p.noMorePublishing) throw NatsError.errorForCode(ErrorCode.ConnectionDraining);
    const info = p.info;
    if (info && !info.headers) throw new NatsError("headers", ErrorCode.ServerOptionNotAvailable);
    const size = frame.bodyEnd - frame.headerStart;
    if (info?.max_payload !== undefined && size > info.max_payload) throw NatsError.errorForCode(ErrorCode.MaxPayloadExceeded);
    p.outBytes += size;
    p.outMsgs++;
    p.sendCommand(frame.bytes);
  }

  private publishPlain(frame: Frame): void {
    const headers = frame.bytes.subarray(frame.headerStart, frame.bodyStart);
    this.nc.publish(frame.subject, frame.bytes.subarray(frame.bodyStart, frame.bodyEnd), {
      ...(frame.reply ? { reply: frame.reply } : {}),
      headers: asNatsHeaders({ encode: () => headers }),
    });
  }
}
