// Finds running svcmesh instances with the NATS services protocol ($SRV.INFO), the
// same way stock NATS tooling does, and groups them by service and version (ls), or
// details one service: its endpoints' contracts and limits (info).
import { type EndpointInfo, type NatsConnection, RequestStrategy, type ServiceInfo } from "nats";
import { instanceFromInfo, SUBJECT_ROOT } from "svcmesh/internal";

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
  return group(await queryInfo(nc, undefined, maxWaitMs));
}

/**
 * Every $SRV.INFO answer, or those of one service (`$SRV.INFO.<name>`), waiting up
 * to maxWaitMs and at most the jitter after the last answer.
 */
export async function queryInfo(nc: NatsConnection, name: string | undefined, maxWaitMs = DISCOVERY_MAX_WAIT_MS): Promise<ServiceInfo[]> {
  const client = nc.services.client({
    strategy: RequestStrategy.JitterTimer,
    jitter: Math.min(DISCOVERY_JITTER_MS, maxWaitMs),
    maxWait: maxWaitMs,
  });
  const infos: ServiceInfo[] = [];
  try {
    for await (const info of await client.info(name)) infos.push(info);
  } catch (e) {
    // Nobody answering $SRV.INFO at all: an empty mesh, not a failure.
    if (!isNoResponders(e)) throw e;
  }
  return infos;
}

/** One endpoint as its instances publish it, schemas parsed. */
export interface EndpointDetail {
  name: string;
  subject: string;
  description?: string;
  idempotent: boolean;
  /** The endpoint's bulkhead per instance, when it has one. */
  maxConcurrent?: number;
  /** JSON Schema of the input (`{}` accepts anything), or null if unreadable. */
  input: unknown;
  output: unknown;
}

export interface VersionDetail {
  version: string;
  description: string;
  /** Instance ids, sorted. */
  instances: string[];
  /** Per-caller limits the service publishes (`*`: everyone not named), or null. */
  rateLimits: Record<string, unknown> | null;
  /** Sorted by name; for an endpoint several instances serve, the first instance's (by id) view. */
  endpoints: EndpointDetail[];
}

export interface ServiceDetail {
  service: string;
  /** Newest first. */
  versions: VersionDetail[];
}

/** The svcmesh instances among `infos` of one service, grouped by version; undefined if there are none. */
export function describeService(service: string, infos: readonly ServiceInfo[]): ServiceDetail | undefined {
  const byVersion = new Map<string, ServiceInfo[]>();
  for (const info of [...infos].sort((a, b) => a.id.localeCompare(b.id))) {
    if (info.name !== service || !instanceFromInfo(info)) continue;
    const list = byVersion.get(info.version) ?? [];
    list.push(info);
    byVersion.set(info.version, list);
  }
  if (byVersion.size === 0) return undefined;
  const versions = [...byVersion.entries()]
    .sort(([a], [b]) => compareVersionsDesc(a, b))
    .map(([version, list]): VersionDetail => {
      const endpoints = new Map<string, EndpointDetail>();
      for (const info of list) {
        for (const e of info.endpoints ?? []) {
          if (!e.subject.startsWith(`${SUBJECT_ROOT}.`) || endpoints.has(e.name)) continue;
          endpoints.set(e.name, endpointDetail(e));
        }
      }
      const first = list[0]!;
      return {
        version,
        description: first.description ?? "",
        instances: list.map((i) => i.id),
        rateLimits: parseJsonObject(first.metadata?.rate_limits),
        endpoints: [...endpoints.values()].sort((a, b) => a.name.localeCompare(b.name)),
      };
    });
  return { service, versions };
}

function endpointDetail(e: EndpointInfo): EndpointDetail {
  const m = e.metadata ?? {};
  const maxConcurrent = m.max_concurrent === undefined ? undefined : Number(m.max_concurrent);
  return {
    name: e.name,
    subject: e.subject,
    ...(m.description ? { description: m.description } : {}),
    idempotent: m.idempotent === "true",
    ...(maxConcurrent !== undefined && Number.isFinite(maxConcurrent) ? { maxConcurrent } : {}),
    input: parseJsonObject(m.input_schema),
    output: parseJsonObject(m.output_schema),
  };
}

function parseJsonObject(text: string | undefined): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
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
