// Row "bare nc.request": what a nats.js user gets out of the box, default connect options.
import { connect } from "nats";
import { TIMEOUT_MS, claim, pack, unpack } from "../contract.mjs";
import { SUBJECT } from "./responder.mjs";

export { serve } from "./responder.mjs";

export async function caller(url) {
  const nc = await connect({ servers: url, name: "bench-bare" });
  return {
    call: async () => unpack((await nc.request(SUBJECT, pack(claim), { timeout: TIMEOUT_MS })).data),
    close: () => nc.close(),
  };
}
