// Row "services": the NATS services framework from the `nats` package (nc.services.add),
// the layer svcmesh itself serves through. Service payments 2.1.0, endpoint reimburse on
// the bare rows' subject (queue group "q", the framework's default), handler as the bare
// responder: msgpack in, decide, msgpack out. The caller is bare's (nc.request).
import { connect } from "nats";
import { decide, pack, unpack } from "../contract.mjs";
import { SUBJECT } from "./responder.mjs";

export { caller } from "./bare.mjs";

export async function serve(url) {
  const nc = await connect({ servers: url, name: "bench-services" });
  const service = await nc.services.add({ name: "payments", version: "2.1.0" });
  service.addEndpoint("reimburse", {
    subject: SUBJECT,
    handler: (err, msg) => {
      if (!err) msg.respond(pack(decide(unpack(msg.data))));
    },
  });
  await nc.flush(); // the subscription is live at the server before we say "ready"
  return {
    close: async () => {
      await service.stop();
      await nc.drain();
    },
  };
}
