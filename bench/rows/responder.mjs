// The plain nats.js responder shared by the `bare` and `ceiling` rows: a queue-group
// subscription that msgpack-decodes the claim and replies with the msgpack decision.
// A callback subscription rather than an async iterator: it is what the NATS
// services framework (and so svcmesh) uses, so the service sides are comparable.
import { connect } from "nats";
import { decide, pack, unpack } from "../contract.mjs";

export const SUBJECT = "bench.claims.reimburse";

export async function serve(url) {
  const nc = await connect({ servers: url, name: "bench-responder" });
  nc.subscribe(SUBJECT, {
    queue: "bench-claims",
    callback: (err, msg) => {
      if (!err) msg.respond(pack(decide(unpack(msg.data))));
    },
  });
  await nc.flush(); // the subscription is live at the server before we say "ready"
  return { close: () => nc.drain() };
}
