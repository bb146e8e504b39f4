// Handlers still running well past their request's deadline (a hung database call, a
// forgotten promise). Such a handler keeps its bulkhead slot: it still runs and holds
// what it holds, so freeing the slot would make concurrency unbounded. Instead the
// instance says so: one warning per overdue request naming it, a count per endpoint
// (ServiceHandle.overdue, the svcmesh.server.overdue gauge), and an info line when it
// finally settles. Per request this costs a slot taken from and given back to a reused
// table; one coarse unref'd timer per instance sweeps it, armed only while requests are
// in flight.
import type { Logger } from "pino";
import type { RequestMeta } from "../wire.js";
import type { EndpointRuntime } from "./endpoint.js";

export interface OverdueTiming {
  /**
   * How long past its deadline a handler may run before it is reported. The caller has
   * given up at the deadline; a handler finishing its work a little late, or a process
   * stalled for a moment (GC, a busy event loop), is not news. 5 s past it is: by then
   * the handler ignores its deadline, and it still holds its bulkhead slot.
   */
  graceMs: number;
  /** How often the slots are swept: a warning comes graceMs to graceMs + sweepMs after the deadline. */
  sweepMs: number;
  /** Per endpoint, at most one warning and one info line per this long; the rest are counted into the next line. */
  logEveryMs: number;
}

const OVERDUE_TIMING: OverdueTiming = { graceMs: 5_000, sweepMs: 1_000, logEveryMs: 5_000 };

/** One admitted request, from its admission to its reply. Reused once it is given back. */
export interface HandlerSlot {
  ep: EndpointRuntime | undefined;
  meta: RequestMeta | undefined;
  startedAt: number;
  /** Counted in ep.overdue (and warned of, or counted into a warning). */
  overdue: boolean;
}

/** Per endpoint: when its last lines went out and how many were held back since. */
interface EndpointLines {
  /** The first of this sweep's newly overdue requests: the one its warning names. */
  fresh: HandlerSlot | undefined;
  warnedAt: number;
  warnHeld: number;
  settledAt: number;
  settledHeld: number;
}

export class HandlerWatch {
  private readonly slots: HandlerSlot[] = [];
  private readonly free: HandlerSlot[] = [];
  private readonly lines = new Map<EndpointRuntime, EndpointLines>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly logger: Logger, private readonly service: string, private readonly timing: OverdueTiming = OVERDUE_TIMING) {}

  /** A request took one of `ep`'s slots. */
  enter(ep: EndpointRuntime, meta: RequestMeta, startedAt: number): HandlerSlot {
    const slot = this.free.pop() ?? this.grow();
    slot.ep = ep;
    slot.meta = meta;
    slot.startedAt = startedAt;
    if (this.timer === undefined && !this.closed) this.arm();
    return slot;
  }

  /** Its handler settled (and it was answered): the slot goes back. */
  leave(slot: HandlerSlot): void {
    if (slot.overdue) this.settledOverdue(slot);
    slot.ep = undefined;
    slot.meta = undefined;
    this.free.push(slot);
  }

  /** Stops sweeping for good (the instance stopped); handlers settling later still update the counts. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private grow(): HandlerSlot {
    const slot: HandlerSlot = { ep: undefined, meta: undefined, startedAt: 0, overdue: false };
    this.slots.push(slot);
    return slot;
  }

  private arm(): void {
    this.timer = setInterval(this.sweep, this.timing.sweepMs);
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    const now = Date.now();
    const limit = now - this.timing.graceMs;
    let busy = 0;
    // First count every newly overdue handler, so the lines below say how many there are.
    for (const slot of this.slots) {
      const meta = slot.meta;
      if (meta === undefined) continue;
      busy++;
      if (slot.overdue || meta.deadline > limit) continue;
      slot.overdue = true;
      const lines = this.linesOf(slot.ep!);
      slot.ep!.overdue++;
      if (lines.fresh === undefined) lines.fresh = slot;
      else lines.warnHeld++;
    }
    let held = false;
    for (const [ep, lines] of this.lines) {
      const open = now - lines.warnedAt >= this.timing.logEveryMs;
      if (lines.fresh !== undefined) {
        if (open) this.warn(lines.fresh, lines, now);
        else lines.warnHeld++;
        lines.fresh = undefined;
      } else if (lines.warnHeld > 0 && open) this.warnHeld(ep, lines, now);
      if (lines.settledHeld > 0 && now - lines.settledAt >= this.timing.logEveryMs) this.settledHeldLine(ep, lines, now);
      held ||= lines.warnHeld > 0 || lines.settledHeld > 0;
    }
    if (busy === 0 && !held) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  };

  private linesOf(ep: EndpointRuntime): EndpointLines {
    let lines = this.lines.get(ep);
    if (lines === undefined) this.lines.set(ep, (lines = { fresh: undefined, warnedAt: -Infinity, warnHeld: 0, settledAt: -Infinity, settledHeld: 0 }));
    return lines;
  }

  /** Names one newly overdue request, counting the others since the last line (`more`). */
  private warn(slot: HandlerSlot, lines: EndpointLines, now: number): void {
    const ep = slot.ep!;
    const meta = slot.meta!;
    const more = lines.warnHeld;
    lines.warnedAt = now;
    lines.warnHeld = 0;
    const pastDeadlineMs = now - meta.deadline;
    this.logger.warn(
      { endpoint: ep.name, requestId: meta.requestId, caller: meta.caller, pastDeadlineMs, ...this.held(ep), ...(more > 0 ? { more } : {}) },
      `${this.service}.${ep.name}: a handler is still running ${seconds(pastDeadlineMs)} past its request's deadline (request ${meta.requestId || "without id"} from ${meta.caller || "an unnamed caller"}); ` +
        `its caller has given up${Number.isFinite(ep.maxConcurrent) ? ", but it keeps its bulkhead slot until it settles" : ""}; ${this.slotsText(ep)}${more > 0 ? `; ${more} more became overdue, not logged one by one` : ""}`,
    );
  }

  private warnHeld(ep: EndpointRuntime, lines: EndpointLines, now: number): void {
    const more = lines.warnHeld;
    lines.warnedAt = now;
    lines.warnHeld = 0;
    this.logger.warn(
      { endpoint: ep.name, more, ...this.held(ep) },
      `${this.service}.${ep.name}: ${more} more handler(s) became overdue (running more than ${seconds(this.timing.graceMs)} past their requests' deadlines); ${this.slotsText(ep)}`,
    );
  }

  private settledOverdue(slot: HandlerSlot): void {
    const ep = slot.ep!;
    const meta = slot.meta!;
    slot.overdue = false;
    ep.overdue--;
    const lines = this.linesOf(ep);
    const now = Date.now();
    if (now - lines.settledAt < this.timing.logEveryMs) {
      lines.settledHeld++;
      return;
    }
    const more = lines.settledHeld;
    lines.settledAt = now;
    lines.settledHeld = 0;
    const ranMs = now - slot.startedAt;
    this.logger.info(
      { endpoint: ep.name, requestId: meta.requestId, caller: meta.caller, ranMs, pastDeadlineMs: now - meta.deadline, overdue: ep.overdue, ...(more > 0 ? { more } : {}) },
      `${this.service}.${ep.name}: the overdue handler of request ${meta.requestId || "without id"} settled after running ${seconds(ranMs)} (${seconds(now - meta.deadline)} past its deadline)${Number.isFinite(ep.maxConcurrent) ? "; its bulkhead slot is free" : ""}${more > 0 ? `; ${more} more overdue handler(s) settled before it, not logged one by one` : ""}`,
    );
  }

  private settledHeldLine(ep: EndpointRuntime, lines: EndpointLines, now: number): void {
    const more = lines.settledHeld;
    lines.settledAt = now;
    lines.settledHeld = 0;
    this.logger.info({ endpoint: ep.name, more, overdue: ep.overdue }, `${this.service}.${ep.name}: ${more} more overdue handler(s) settled; ${ep.overdue} still overdue`);
  }

  private held(ep: EndpointRuntime): { overdue: number; maxConcurrent?: number } {
    return Number.isFinite(ep.maxConcurrent) ? { overdue: ep.overdue, maxConcurrent: ep.maxConcurrent } : { overdue: ep.overdue };
  }

  private slotsText(ep: EndpointRuntime): string {
    return Number.isFinite(ep.maxConcurrent)
      ? `${ep.overdue} of its ${ep.maxConcurrent} bulkhead slot(s) now held by overdue handlers${ep.overdue >= ep.maxConcurrent ? " (it refuses every call until one settles)" : ""}`
      : `${ep.overdue} overdue handler(s) on this endpoint`;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
