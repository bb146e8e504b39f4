// Latencies as a log-bucketed histogram: 0.5% wide buckets from 1 µs to ~100 s in 16 KB.
// The caller once kept every latency in a Float64Array sized for 1M calls/s (24 MB for a
// 3 s window). That much external memory kept V8 marking and promoting in the caller:
// svcmesh's caller spent 8-9 µs per call instead of 5, and the slowdown hit callers
// that allocate more per call harder, so it skewed the rows against each other.
const GROWTH = 1.005;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e8) / LOG_GROWTH) + 1;

export class LatencyHistogram {
  counts = new Uint32Array(BUCKETS);
  total = 0;

  /** Records one latency in µs (values under 1 µs count as 1 µs). */
  record(us) {
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_GROWTH));
    this.counts[i]++;
    this.total++;
  }

  /** The q-quantile in µs (the middle of its bucket: within 0.25%), or null when empty. */
  quantile(q) {
    if (this.total === 0) return null;
    const rank = Math.min(this.total - 1, Math.floor(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen > rank) return GROWTH ** (i + 0.5);
    }
    return GROWTH ** BUCKETS;
  }
}
