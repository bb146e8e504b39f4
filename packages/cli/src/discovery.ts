// Finds running svcmesh instances with the NATS services protocol ($SRV.INFO), the
// same way stock NATS tooling does, and groups them by service and version.
import { type NatsConnection, RequestStrategy, type ServiceInfo } from "nats";
import { instanceFromInfo } from "svcmesh/internal";

/** After an answer, how long to wait for more before the listing is complete. */
export const DISCOVERY_JITTER_MS = 200;
/** Default upper bound on one discovery query. */
export const DISCOVERY_MAX_WAIT_MS = 2_000;

export interface ServiceGroup {
  service: string;
  version: string;
  /** Instance ids, sorted. */
  instances: string[];
  /** Mesh endpoint names served by any instance of the group, sorted. */
  endpoints: string[];
}

export async function discover(nc: NatsConnection, maxWaitMs = DISCOVERY_MAX_WAIT_MS): Promise<ServiceGroup[]> {
  const client = nc.services.client({
    strategy: RequestStrategy.JitterTimer,
    jitter: Math.min(DISCOVERY_JITTER_MS, maxWaitMs),
    maxWait: maxWaitMs,
  });
  const infos: ServiceInfo[] = [];
  try {
    for await (const info of await client.info()) infos.push(info);
  } catch (e) {
    // Nobody answering $SRV.INFO at all: an empty mesh, not a failure.
    if (!isNoResponders(e)) throw e;
  }
  return group(infos);
}

export function group(infos: readonly ServiceInfo[]): ServiceGroup[] {
  const groups = new Map<string, { service: string; version: string; instances: Set<string>; endpoints: Set<string> }>();
  for (const info of infos) {
    const instance = instanceFromInfo(info); // undefined for services that are not svcmesh's
    if (!instance) continue;
    const key = `${info.name}@${instance.version}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { service: info.name, version: instance.version, instances: new Set(), endpoints: new Set() }));
    g.instances.add(instance.id);
    for (const e of instance.endpoints) g.endpoints.add(e);
  }
  return [...groups.values()]
    .map((g) => ({ service: g.service, version: g.version, instances: [...g.instances].sort(), endpoints: [...g.endpoints].sort() }))
    .sort((a, b) => a.service.localeCompare(b.service) || compareVersionsDesc(a.version, b.version));
}

/** Newest first; for display order only (release before its own prereleases). */
function compareVersionsDesc(a: string, b: string): number {
  const [coreA = "", preA] = splitPrerelease(a);
  const [coreB = "", preB] = splitPrerelease(b);
  const byCore = coreB.localeCompare(coreA, "en", { numeric: true });
  if (byCore !== 0) return byCore;
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? -1 : 1;
  return preB.localeCompare(preA, "en", { numeric: true });
}

function splitPrerelease(version: string): [string, string | undefined] {
  const core = version.split("+")[0] ?? version;
  const dash = core.indexOf("-");
  return dash < 0 ? [core, undefined] : [core.slice(0, dash), core.slice(dash + 1)];
}

function isNoResponders(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === "503";
}
