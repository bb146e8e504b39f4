// docker/docker-compose.yml without a Docker engine: its shape is checked statically,
// then the same topology is run with native processes: the three NATS nodes with the
// compose file's own nats-server flags (hosts and ports mapped to loopback), the example
// services and the one-shot client with the compose commands and environment.
// Needs `pnpm build` (the commands run packages/examples/dist).
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { serviceNames } from "../packages/examples/src/catalog.ts";
import { within } from "./helpers/child.ts";
import {
  assertStory, commandOf, dependsOn, envOf, exampleOf, nativeRun, nodeArgs, outputs, readCompose, root, serviceEnv, startNativeCluster, stopAll,
} from "./helpers/compose.ts";

const file = readCompose("docker-compose.yml");

// The plain demo and its secure variant share the topology.
for (const fileName of ["docker-compose.yml", "docker-compose.secure.yml"]) describe(fileName, () => {
  // The secure file's route password comes from setup.mjs's cluster.env; any value does for the shape.
  const { compose, services, natsNodes, nodeNames, nodeFlags, flag, clientPort, clusterPort, appServices } = readCompose(fileName, { NATS_ROUTE_PASSWORD: "shape-check" });

  test("has three NATS 2.9 nodes, each named, clustered and with JetStream on its own volume", () => {
    assert.equal(natsNodes.length, 3, `nats services: ${nodeNames.join(", ")}`);
    const names = nodeNames.map((n) => flag(n, "server_name"));
    assert.deepEqual(names, nodeNames, "each node's server_name is its compose service name");
    const clusterNames = new Set(nodeNames.map((n) => flag(n, "cluster_name")));
    assert.equal(clusterNames.size, 1, "one cluster name for all nodes");
    assert.ok([...clusterNames][0], "cluster_name is set");
    const volumes = new Set<string>();
    for (const [n, s] of natsNodes) {
      assert.ok(nodeFlags.get(n)!.has("jetstream"), `${n} runs JetStream`);
      const store = flag(n, "store_dir");
      assert.ok(store && isAbsolute(store), `${n} has a store_dir`);
      const mount = (s.volumes ?? []).map((v) => v.split(":")).find(([, target]) => store.startsWith(target!));
      assert.ok(mount, `${n}'s store_dir ${store} is on a volume`);
      assert.ok(Object.hasOwn(compose.volumes ?? {}, mount[0]!), `volume ${mount[0]} is declared`);
      volumes.add(mount[0]!);
      assert.ok(Number.isInteger(clusterPort(n)) && clusterPort(n) > 0, `${n} listens for routes`);
    }
    assert.equal(volumes.size, 3, "every node has its own store volume");
  });

  test("every node's routes are exactly the other two nodes' cluster ports", () => {
    for (const n of nodeNames) {
      const routes = (flag(n, "routes") ?? "").split(",").map((r) => new URL(r.trim()));
      const others = nodeNames.filter((o) => o !== n);
      assert.deepEqual(routes.map((u) => u.hostname).sort(), [...others].sort(), `${n} routes`);
      for (const u of routes) assert.equal(Number(u.port), clusterPort(u.hostname), `${n} → ${u.hostname} uses its cluster port`);
    }
  });

  test("runs every example service (payments twice), built from docker/Dockerfile", () => {
    assert.ok(serviceNames.length >= 3, `examples: ${serviceNames.join(", ")}`);
    for (const name of serviceNames) {
      const running = appServices.filter(([, s]) => exampleOf(s) === name).map(([n]) => n);
      assert.ok(running.length >= (name === "payments" ? 2 : 1), `compose services running ${name}: ${running.join(", ") || "none"}`);
    }
    const unknown = appServices.map(([, s]) => exampleOf(s)).filter((e) => e !== undefined && !(serviceNames as string[]).includes(e));
    assert.deepEqual(unknown, [], "no compose service runs an example that does not exist");
    for (const [n, s] of appServices) {
      const build = typeof s.build === "string" ? { context: s.build } : s.build!;
      assert.equal(resolve(root, "docker", build.context ?? "."), resolve(root), `${n} builds from the repository root`);
      assert.equal(build.dockerfile, "docker/Dockerfile", n);
      const script = commandOf(s).find((a) => a.endsWith(".js"));
      assert.ok(script && existsSync(join(root, script)), `${n}'s script ${script} exists (after pnpm build)`);
    }
    const dockerfile = readFileSync(join(root, "docker/Dockerfile"), "utf8");
    assert.match(dockerfile, /^FROM node:20\b/m);
    assert.match(dockerfile, /npm install -g pnpm@12\b/);
    assert.match(dockerfile, /^WORKDIR \/app$/m);
    assert.match(dockerfile, /pnpm install --frozen-lockfile/);
    assert.match(dockerfile, /pnpm build/);
  });

  test("every app service's NATS_URL lists all three nodes, and it starts after them", () => {
    const cluster = nodeNames.map((n) => `nats://${n}:${clientPort(n)}`).sort();
    assert.ok(appServices.length > 0);
    for (const [n, s] of appServices) {
      const url = envOf(s).NATS_URL ?? "";
      assert.deepEqual(url.split(",").map((u) => u.trim()).sort(), cluster, `${n} NATS_URL`);
      for (const node of nodeNames) assert.ok(dependsOn(s).includes(node), `${n} depends on ${node}`);
    }
  });

  test("depends_on and volumes name things the file declares", () => {
    for (const [n, s] of services) {
      for (const d of dependsOn(s)) assert.ok(Object.hasOwn(compose.services, d), `${n} depends on unknown service ${d}`);
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0]!;
        if (!source.startsWith(".") && !source.startsWith("/")) assert.ok(Object.hasOwn(compose.volumes ?? {}, source), `${n} mounts undeclared volume ${source}`);
      }
    }
  });
});

// ---- what `docker build` leaves out of the image ----

/**
 * docker/Dockerfile.dockerignore as Docker reads it (moby/patternmatcher), for the
 * subset it uses: `#` comments, `!` re-includes, `*` (not across `/`), `?`, and `**`
 * (any number of directories, also none). Patterns match paths from the context root,
 * and a path is excluded when it or one of its parent directories matches; the last
 * matching pattern decides. Character classes and escapes are refused (not needed).
 */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")).map((line) => {
    const exclude = !line.startsWith("!");
    const pattern = (exclude ? line : line.slice(1)).trim().replace(/^\/+/, "").replace(/\/+$/, "");
    assert.doesNotMatch(pattern, /[[\]\\]/, `dockerignore pattern ${line}: outside the subset this test reads`);
    let re = "^";
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!;
      if (c === "*" && pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") i++;
        re += i + 1 >= pattern.length ? ".*" : "(.*/)?";
      } else if (c === "*") re += "[^/]*";
      else if (c === "?") re += "[^/]";
      else re += c.replace(/[.+()|{}$^]/g, "\\$&");
    }
    return { exclude, re: new RegExp(re + "$") };
  });
  return (path) => {
    const parts = path.split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) excluded = r.exclude;
    return excluded;
  };
}

const ignored = dockerignore(readFileSync(join(root, "docker/Dockerfile.dockerignore"), "utf8"));

/** Files under `dir` (relative to the root), without node_modules and dist. */
function filesUnder(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return ["node_modules", "dist"].includes(e.name) ? [] : filesUnder(rel);
    return [rel];
  });
}

describe("Dockerfile.dockerignore", () => {
  // Secret material the docs and the CLI tell operators to make, under the names they
  // use: if it sits in the checkout, `COPY . .` must not take it into the image.
  const documented = [
    ".env", ".env.local", ".env.production", // SVCMESH_SEED=... lines (README, `identity new`'s help)
    "claims.env", // `svcmesh nats-config --out-dir` writes <service>.env, with SVCMESH_SEED for generated keys
    "authorization.conf", // `svcmesh nats-config policies.yaml > authorization.conf`: the broker's users
    "nats-server.conf", "server.conf", // the nats-server config that includes it (and its tls block)
    "ca.pem", "claims.pem", "claims-key.pem", "server.pem", "server-key.pem", // README's TLS and mTLS section
    "claims.key", "claims.crt", "claims.p12", "claims.pfx",
    "claims.seed", "claims.nk", "claims.creds", // nkey seed and NATS credential files
  ];
  // Any file name with a secret-bearing extension the READMEs mention (a name documented later is checked too).
  const mentioned = [...new Set(["README.md", "packages/cli/README.md"].flatMap((f) =>
    [...readFileSync(join(root, f), "utf8").matchAll(/(?<![\w.$])[\w<>-]*\.(?:pem|key|crt|p12|pfx|seed|nk|creds|conf|env)\b(?!\.\w)/g)].map((m) => m[0])))];

  test("every secret file name the README and the CLI suggest is left out, wherever it sits", () => {
    assert.ok(mentioned.includes("claims-key.pem") && mentioned.includes("authorization.conf"), `found in the docs: ${mentioned.join(", ")}`);
    const names = [...new Set([...documented, ...mentioned])];
    const where = ["", "deploy/nats/", "secrets/", "packages/examples/", "docker/"];
    const kept = names.flatMap((n) => where.map((w) => w + n)).filter((p) => !ignored(p));
    assert.deepEqual(kept, [], "secret files `docker build` would copy into the image");
  });

  test("what docker/secure/setup.mjs writes is left out whole, the policy with its keys too", () => {
    for (const f of ["policies.yaml", "authorization.conf", "claims.env", "operator.env", "any/thing"]) assert.ok(ignored(`docker/secure/deploy/${f}`), f);
    assert.ok(!ignored("docker/secure/setup.mjs") && !ignored("docker/secure/policies.yaml"), "the template and the script stay");
  });

  test("what the image build needs stays in: sources, package.json files, lockfile, tsconfigs", () => {
    const needed = [
      ...readdirSync(root).filter((f) => /^(package\.json|pnpm-lock\.yaml|pnpm-workspace\.yaml|tsconfig[\w.]*\.json)$/.test(f)),
      ...filesUnder("packages").filter((f) => /^packages\/[^/]+\/(package\.json|tsconfig[\w.]*\.json|src\/.+)$/.test(f)),
    ];
    assert.ok(needed.includes("pnpm-lock.yaml") && needed.some((f) => f.startsWith("packages/examples/src/")), needed.join(", "));
    assert.deepEqual(needed.filter(ignored), [], "files the Dockerfile's install and build need");
    // The matcher itself: what the file always left out still is.
    for (const p of ["node_modules/x", "packages/cli/node_modules/x", "packages/svcmesh/dist/index.js", ".git/HEAD", "bench/out/a.json"]) assert.ok(ignored(p), p);
  });
});

// ---- the same topology, natively ----

const native = nativeRun();
after(() => native.cleanup());

test("the compose topology works: cluster forms, services join across nodes, the client's story succeeds", async () => {
  const run = native.start;
  // The compose flags, with container hosts and ports mapped to loopback.
  const cluster = await startNativeCluster(file, native.tempDir("svcmesh-compose-"), (cmd, args) => run(cmd, args, process.env));
  const servers = file.appServices.filter(([, s]) => exampleOf(s) !== undefined);
  const clients = file.appServices.filter(([, s]) => exampleOf(s) === undefined);
  assert.deepEqual(clients.map(([n]) => n), ["demo-client"]);
  const running = servers.map(([n, s]) => ({ name: n, started: run(process.execPath, nodeArgs(s), serviceEnv(s, cluster)) }));

  const [clientName, clientSpec] = clients[0]!;
  const client = run(process.execPath, nodeArgs(clientSpec), serviceEnv(clientSpec, cluster));
  const code = await within(60_000, clientName, client.exit);
  assertStory(code, client.output(), () => `${clientName} output:\n${client.output()}\n${outputs(running)}`);
  await stopAll(running, cluster);
});
