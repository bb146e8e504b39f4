// Caches keyed by what users pass (target services): a caller that forwards arbitrary
// names must not grow them without end.

/** Entries a per-target cache keeps at most; the oldest is forgotten first. */
export const MAX_PER_TARGET = 1024;

/** Sets key → value, forgetting the oldest entry first when the map is full. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max = MAX_PER_TARGET): void {
  if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}
