// What a service process (service.ts) tells the process that started it, over the
// IPC channel when it has one: the demo learns readiness and instance ids this way
// instead of parsing logs (whose level the user may have turned down).

export interface ReadyMessage {
  type: "ready";
  service: string;
  version: string;
  instance: string;
  pid: number;
}

export function isReadyMessage(m: unknown): m is ReadyMessage {
  if (typeof m !== "object" || m === null) return false;
  const r = m as Record<string, unknown>;
  return r.type === "ready" && typeof r.service === "string" && typeof r.version === "string" && typeof r.instance === "string" && typeof r.pid === "number";
}
