// Row "bare nc.request": what a nats.js user gets out of the box, default connect options.
// With { bytes } (the scale table's payload rows) it sends a request of that size.
import { connect } from "nats";
import { TIMEOUT_MS, pack, requestOf, unpack } from "../contract.mjs";
import { SUBJECT } from "./responder.mjs";

export { serve } from "./responder.mjs";

export async function caller(url, { bytes } = {}) {
  const nc = await connect({ servers: url, name: "bench-bare" });
  const { body } = requestOf(bytes);
  return {
    call: async () => unpack((await nc.request(SUBJECT, pack(body), { timeout: TIMEOUT_MS })).data),
    close: () => nc.close(),
  };
}
