// The rows of the table, in the order they are run and printed. `bare` comes first:
// every other row's throughput is reported as a ratio to it.
export const ROWS = {
  bare: "bare nc.request",
  ceiling: "ceiling (hand-correlated)",
  svcmesh: "svcmesh (tracing off)",
  tracing1: "svcmesh, tracing 1% + OTel SDK",
  tracing100: "svcmesh, tracing 100% + OTel SDK",
  resilience: "svcmesh, resilience on",
  policy: "svcmesh, resilience + identity + policy",
};

/** Loads a row's module (serve + caller); only known ids, so argv never names a file. */
export function loadRow(id) {
  if (!Object.hasOwn(ROWS, id)) throw new Error(`unknown row ${JSON.stringify(id)} (rows: ${Object.keys(ROWS).join(", ")})`);
  return import(`./${id}.mjs`);
}
