// Row "services": the NATS services framework from the `nats` package (nc.services.add),
// the layer svcmesh itself serves through. Service payments 2.1.0, endpoint reimburse on
// the bare rows' subject (queue group "q", the framework's default), handler as the bare
// responder: msgpack in, decide, msgpack out. The caller is bare's (nc.request).
// With { services: N } (the framework's scale rows, beside svcmesh's "registered" ones)
// it serves N framework services on N subjects, and the caller is the ceiling's (hand-
// correlated, so that the caller's own cost does not hide the service's and the
// server's); it spreads its calls over all N, or, with { callOne: true }, calls the first.
import { connect } from "nats";
import { decide, pack, unpack } from "../contract.mjs";
import { caller as bareCaller } from "./bare.mjs";
import { caller as ceilingCaller } from "./ceiling.mjs";
import { SUBJECT } from "./responder.mjs";

const subjectsOf = (n) => Array.from({ length: n }, (_, i) => `bench.claims.s${i + 1}.reimburse`);

export async function serve(url, { services } = {}) {
  const nc = await connect({ servers: url, name: "bench-services" });
  const started = [];
  const subjects = services === undefined ? [SUBJECT] : subjectsOf(services);
  for (const [i, subject] of subjects.entries()) {
    const service = await nc.services.add({ name: i === 0 ? "payments" : `payments-${i + 1}`, version: "2.1.0" });
    service.addEndpoint("reimburse", {
      subject,
      handler: (err, msg) => {
        if (!err) msg.respond(pack(decide(unpack(msg.data))));
      },
    });
    started.push(service);
  }
  await nc.flush(); // the subscriptions are live at the server before we say "ready"
  return {
    close: async () => {
      for (const service of started) await service.stop();
      await nc.drain();
    },
  };
}

export function caller(url, { services, callOne = false } = {}) {
  if (services === undefined) return bareCaller(url);
  return ceilingCaller(url, { subjects: callOne ? subjectsOf(1) : subjectsOf(services) });
}
