// Every example service, by the name its process entry point (service.ts) takes.
// The Docker compose test derives its list of services from here.
import type { Mesh, ServiceHandle } from "svcmesh";
import { serveAuth } from "./auth.js";
import { serveClaims } from "./claims.js";
import { servePayments } from "./payments.js";

export const catalog = {
  auth: serveAuth,
  claims: serveClaims,
  payments: servePayments,
} as const satisfies Record<string, (mesh: Mesh) => Promise<ServiceHandle>>;

export type ServiceName = keyof typeof catalog;

export const serviceNames = Object.keys(catalog) as ServiceName[];

export function isServiceName(name: string): name is ServiceName {
  return Object.hasOwn(catalog, name);
}
