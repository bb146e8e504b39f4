// The rows of the two tables, in the order they are run and printed.
//   main:  one row per stack, all on the shared claim contract (contract.mjs). `bare`
//          comes first: every other row's throughput is a ratio to it.
//   scale: one thing varied per group (service instances, services registered, policy
//          rules, payload size); each row's ratio is to its group's first step (payload
//          rows: svcmesh to bare at the same size), so "flat within 10%" reads off it.
// A row: { table, group, label, scale (the varied parameter, scale table only),
// module (rows/<module>.mjs, exporting serve(url, args) and caller(url, args)), args,
// instances (service processes; 1 unless said), inFlight (default counts), base }.

const MAIN_IN_FLIGHT = [1, 16, 256];
const SCALE_IN_FLIGHT = [256];

const SVCMESH_CORE = "svcmesh (tracing off)";
const SVCMESH_POLICY = "svcmesh, resilience + identity + policy";

function mainRow(id, label, more = {}) {
  return [id, { table: "main", group: id, label, module: id, args: undefined, instances: 1, inFlight: MAIN_IN_FLIGHT, base: "bare", ...more }];
}

/** One scale group: `make(step)` gives the row's fields; ids are `<group>-<step>`, the first step the base. */
function scaleGroup(group, steps, make) {
  return steps.map((step) => [
    `${group}-${step}`,
    { table: "scale", group, args: undefined, instances: 1, inFlight: SCALE_IN_FLIGHT, base: `${group}-${steps[0]}`, ...make(step) },
  ]);
}

// Not toLocaleString: loading ICU costs every child process ~15 ms, seen in profiles.
const thousands = (n) => String(n).replace(/\B(?=(\d{3})+$)/g, ",");
const plural = (n, word) => `${thousands(n)} ${word}${n === 1 ? "" : "s"}`;
// Size → in-flight counts. 500 KB stops at 16: at 256 in flight (128 MB queued) a call
// waits ~1.3 s on this machine, close to the 2 s timeout, which measures only the queue.
const PAYLOADS = {
  "100": { bytes: 100, inFlight: [1, 256] },
  "10k": { bytes: 10 * 1024, inFlight: [1, 256] },
  "500k": { bytes: 500 * 1024, inFlight: [1, 16] },
};
const sizeLabel = (bytes) => (bytes < 1024 ? `${bytes} B` : `${bytes / 1024} KB`);

export const ROWS = Object.fromEntries([
  mainRow("bare", "bare nc.request"),
  mainRow("ceiling", "ceiling (hand-correlated)"),
  mainRow("services", "NATS services framework (nc.services.add)"),
  mainRow("moleculer", "Moleculer, NATS transporter, fault tolerance off"),
  mainRow("moleculerFt", "Moleculer, breaker + retries + timeout + tracing 1%", { module: "moleculer", args: { faultTolerance: true } }),
  mainRow("svcmesh", SVCMESH_CORE),
  mainRow("tracing1", "svcmesh, tracing 1% + OTel SDK"),
  mainRow("tracing1nosdk", "svcmesh, tracing 1%, no SDK", { module: "tracing1", args: { sdk: false } }),
  mainRow("tracing1mesh", "svcmesh, tracing 1% decided by the mesh + OTel SDK", { module: "tracing1", args: { rootSampling: "mesh" } }),
  mainRow("tracing100", "svcmesh, tracing 100% + OTel SDK"),
  mainRow("resilience", "svcmesh, resilience on"),
  mainRow("policy", SVCMESH_POLICY),
  mainRow("everything", "svcmesh, everything on (policy row + tracing 1% decided by the mesh)", { module: "policy", args: { traceRate: 0.01, rootSampling: "mesh" } }),
  mainRow("everythingSdk", "svcmesh, everything on, tracing 1% decided by the OTel SDK", { module: "policy", args: { traceRate: 0.01 } }),

  // N service processes of the core row; NATS balances the calls over them (queue group).
  ...scaleGroup("instances", [1, 2, 4, 8], (n) => ({ label: SVCMESH_CORE, scale: plural(n, "instance"), module: "svcmesh", instances: n })),
  // One service process serving N distinct services; the caller spreads its calls over all N.
  ...scaleGroup("registered", [1, 50, 200], (n) => ({ label: `${SVCMESH_CORE}, calls spread over all services`, scale: `${plural(n, "service")} registered`, module: "svcmesh", args: { services: n } })),
  // The same process serving N services, all discovered by the caller, which then calls
  // only one: what knowing N services costs a call (the issue's "discovery and target
  // resolution"), without the spreading above. Its base is registered-1, the same setup.
  ...scaleGroup("registeredOne", [50, 200], (n) => ({ label: `${SVCMESH_CORE}, calls to one of them`, scale: `${plural(n, "service")} registered`, module: "svcmesh", args: { services: n, callOne: true } }))
    .map(([id, row]) => [id, { ...row, base: "registered-1" }]),
  // The same two scales for the NATS services framework alone (rows/services.mjs, with the
  // ceiling's caller): what N registered services cost without svcmesh.
  ...scaleGroup("frameworkRegistered", [1, 200], (n) => ({ label: "NATS services framework + ceiling caller, calls spread over all services", scale: `${plural(n, "service")} registered`, module: "services", args: { services: n } })),
  ...scaleGroup("frameworkRegisteredOne", [200], (n) => ({ label: "NATS services framework + ceiling caller, calls to one of them", scale: `${plural(n, "service")} registered`, module: "services", args: { services: n, callOne: true } }))
    .map(([id, row]) => [id, { ...row, base: "frameworkRegistered-1" }]),
  // The policy row with a document of N endpoint rules in force in both processes.
  ...scaleGroup("rules", [10, 1000, 10000], (n) => ({ label: SVCMESH_POLICY, scale: plural(n, "policy rule"), module: "policy", args: { rules: n } })),
  // Requests of a given size (reply: the usual decision), bare and svcmesh core side by side.
  ...Object.entries(PAYLOADS).flatMap(([name, { bytes, inFlight }]) =>
    ["bare", "svcmesh"].map((module) => [
      `payload-${module}-${name}`,
      {
        table: "scale",
        group: "payload",
        label: module === "bare" ? "bare nc.request" : SVCMESH_CORE,
        scale: `${sizeLabel(bytes)} request`,
        module,
        args: { bytes },
        instances: 1,
        inFlight,
        base: `payload-bare-${name}`,
      },
    ]),
  ),
]);

export const TABLES = ["main", "scale"];

/** Loads a row (serve + caller with its args bound); only known ids, so argv never names a file. */
export async function loadRow(id) {
  if (!Object.hasOwn(ROWS, id)) throw new Error(`unknown row ${JSON.stringify(id)} (rows: ${Object.keys(ROWS).join(", ")})`);
  const { module, args } = ROWS[id];
  const m = await import(`./${module}.mjs`);
  return { serve: (url) => m.serve(url, args), caller: (url) => m.caller(url, args) };
}
