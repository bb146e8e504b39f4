// The first connection, retried for a bounded time: in Docker the services may start
// before the NATS cluster accepts clients. (Once connected, nats.js reconnects by itself.)
import { connect, isMeshError, type Mesh, retryableCodes } from "svcmesh";
import type { Logger } from "pino";
import { sleep } from "./bounded.js";

export interface RetryOptions {
  servers: string[];
  name: string;
  logger: Logger;
  /** Give up when this much time has passed since the first attempt. */
  waitMs: number;
  intervalMs?: number;
  /** Stop retrying early (e.g. a stop signal arrived). */
  cancelled?: () => boolean;
}

export async function connectWithRetry(o: RetryOptions): Promise<Mesh> {
  const interval = o.intervalMs ?? 500;
  const until = Date.now() + o.waitMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect({ servers: o.servers, name: o.name, logger: o.logger });
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      // Settings and credentials do not get better by waiting: a bad option, a seed the
      // policy does not register or permissions that refuse the policy (policy.required).
      if (isMeshError(e) && !retryableCodes[e.code]) throw e;
      if (o.cancelled?.() || Date.now() + interval >= until) throw e;
      if (attempt === 1 || attempt % 10 === 0) {
        // UNAVAILABLE is NATS not reachable yet, or (policy.required) no policy in force yet.
        o.logger.warn({ servers: o.servers, attempt, code, err: (e as Error).message }, "cannot connect to the mesh yet; retrying");
      }
      await sleep(interval);
    }
  }
}
