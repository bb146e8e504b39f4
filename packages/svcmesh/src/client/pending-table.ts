// The transport's pending calls by reply token. Tokens are small numbers (the transport
// reuses answered ones, so they stay below the peak number of calls in flight plus the
// few never reused), so a ring of slots indexed by `token & mask` finds a call without
// hashing; a Map takes only the rare call whose slot is held by another token.
// A Map with one set and one delete per call reallocates its table every few hundred
// calls, and under load those tables were among the objects V8 promoted (a sampled heap
// profile of the caller: ~60 B per call with a 1,000-rule policy in the process).

/** What the table needs of an entry. */
export interface Tokened {
  readonly token: number;
}

export class PendingTable<T extends Tokened> {
  private readonly slots: (T | undefined)[];
  private readonly mask: number;
  private readonly overflow = new Map<number, T>();
  private count = 0;

  /** `capacity` is rounded up to a power of two. */
  constructor(capacity = 4096) {
    let size = 1;
    while (size < capacity) size *= 2;
    this.slots = new Array<T | undefined>(size).fill(undefined);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Adds an entry; its token must not be in the table already. */
  add(entry: T): void {
    const i = entry.token & this.mask;
    if (this.slots[i] === undefined) this.slots[i] = entry;
    else this.overflow.set(entry.token, entry);
    this.count++;
  }

  /** The entry with `token`, if there is one. */
  get(token: number): T | undefined {
    const entry = this.slots[token & this.mask];
    return entry !== undefined && entry.token === token ? entry : this.overflow.get(token);
  }

  /** Removes and returns the entry with `token`, if there is one. */
  take(token: number): T | undefined {
    const i = token & this.mask;
    const entry = this.slots[i];
    if (entry !== undefined && entry.token === token) {
      this.slots[i] = undefined;
      this.count--;
      return entry;
    }
    const other = this.overflow.get(token);
    if (other === undefined) return undefined;
    this.overflow.delete(token);
    this.count--;
    return other;
  }

  /** Calls `fn` with every entry; `fn` may take entries (its own or others) as it goes. */
  forEach(fn: (entry: T) => void): void {
    if (this.count === 0) return;
    for (let i = 0; i < this.slots.length; i++) {
      const entry = this.slots[i];
      if (entry !== undefined) fn(entry);
    }
    for (const entry of this.overflow.values()) fn(entry);
  }
}
