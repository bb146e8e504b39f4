// V8's profilers through node:inspector, inside the process being measured: a CPU profile
// (.cpuprofile) or an allocation profile (.heapprofile, read by profile-summary.mjs).
import { Session } from "node:inspector/promises";

/**
 * The sampling heap profiler's settings: one sample per 4 KiB allocated on average (V8's
 * default is 32 KiB), with the objects young and old collections free included, so a
 * profile shows what each call allocates, not only what survives.
 */
export const ALLOC_SAMPLING = { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true };

const PROFILERS = {
  cpu: { domain: "Profiler", start: "Profiler.start", stop: "Profiler.stop", params: undefined },
  alloc: { domain: "HeapProfiler", start: "HeapProfiler.startSampling", stop: "HeapProfiler.stopSampling", params: ALLOC_SAMPLING },
};

/** Starts the "cpu" or "alloc" profiler; the returned function stops it and resolves to the profile. */
export async function startProfile(kind) {
  const p = PROFILERS[kind];
  const session = new Session();
  session.connect();
  await session.post(`${p.domain}.enable`);
  await session.post(p.start, p.params);
  return async () => {
    const { profile } = await session.post(p.stop);
    session.disconnect();
    return profile;
  };
}
