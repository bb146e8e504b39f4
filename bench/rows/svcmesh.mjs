// Row "svcmesh": the core, as users write it: mesh.serve with zod input and output
// schemas, and a bound client. Retries and the breaker (on by default) are switched
// off here; the "resilience" row measures them. So are tracing and the audit trail
// (the "tracing" rows measure tracing; the bench server has no JetStream to audit to).
// Options from the row table (rows/index.mjs): { bytes } sends a request of that size
// (payload rows); { services: N } serves N services and spreads calls over them, or,
// with { callOne: true }, discovers all N and then calls only the first;
// { trace } is connect()'s trace option (default false; the tracing rows set it).
// { audit } is connect()'s audit option for the service (default off; audit-cost.mjs
// turns it on against a server with JetStream).
import { connect } from "svcmesh";
import { TIMEOUT_MS, decide, decisionSchema, requestOf } from "../contract.mjs";

/** payments, payments-2, ... payments-N: distinct services with the same endpoint. */
const serviceNames = (n = 1) => Array.from({ length: n }, (_, i) => (i === 0 ? "payments" : `payments-${i + 1}`));

export async function serve(url, { bytes, services, trace = false, audit = { enabled: false } } = {}) {
  const { schema } = requestOf(bytes);
  const mesh = await connect({ servers: url, name: "payments", trace, audit });
  for (const name of serviceNames(services)) {
    await mesh.serve({
      name,
      version: "2.1.0",
      endpoints: {
        reimburse: { input: schema, output: decisionSchema, handler: async (c) => decide(c) },
      },
    });
  }
  return { close: () => mesh.close(), auditStats: () => mesh.auditStats() };
}

export async function caller(url, { bytes, services, trace = false, callOne = false } = {}) {
  const { body } = requestOf(bytes);
  const mesh = await connect({ servers: url, name: "claims", trace, audit: { enabled: false }, defaults: { retry: { attempts: 1 }, breaker: { enabled: false } } });
  const clients = serviceNames(services).map((name) => mesh.client(`${name}@^2`));
  const opts = { timeoutMs: TIMEOUT_MS };
  // Many services: discover them all before the warm-up, so the window measures calls
  // with N services known and routed, not N first lookups.
  if (clients.length > 1) await Promise.all(clients.map((c) => c.call("reimburse", body, opts)));
  if (callOne) {
    const [first] = clients;
    return { call: () => first.call("reimburse", body, opts), close: () => mesh.close() };
  }
  let next = 0;
  return {
    call: () => clients[next++ % clients.length].call("reimburse", body, opts),
    close: () => mesh.close(),
  };
}
