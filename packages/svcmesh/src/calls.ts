// The calling surface shared by the mesh, bound clients, and handler contexts.
import { type CallOptions, deadlineOf } from "./client/caller.js";
import type { TraceContext } from "./trace/context.js";

export interface MeshCalls {
  call<T = unknown>(target: string, endpoint: string, payload?: unknown, opts?: CallOptions): Promise<T>;
  client(target: string): MeshClient;
}

/** A client bound to one target: the same pipeline as `mesh.call`. */
export interface MeshClient {
  readonly target: string;
  call<T = unknown>(endpoint: string, payload?: unknown, opts?: CallOptions): Promise<T>;
}

export function bindClient(calls: Pick<MeshCalls, "call">, target: string): MeshClient {
  return {
    target,
    call: <T>(endpoint: string, payload?: unknown, opts?: CallOptions) => calls.call<T>(target, endpoint, payload, opts),
  };
}

/** Calls made from inside a handler inherit what is left of the parent's deadline, and its trace. */
export function withinDeadline(calls: Pick<MeshCalls, "call">, parentDeadline: number, trace?: TraceContext): MeshCalls {
  const inherited: MeshCalls = {
    call<T>(target: string, endpoint: string, payload?: unknown, opts?: CallOptions): Promise<T> {
      let own: number;
      try {
        // Infinity: no own timeout means the parent's deadline.
        own = deadlineOf(opts, Date.now(), Infinity);
      } catch (e) {
        return Promise.reject(e);
      }
      return calls.call<T>(target, endpoint, payload, { trace, ...opts, deadline: Math.min(own, parentDeadline) });
    },
    client: (target: string) => bindClient(inherited, target),
  };
  return inherited;
}
