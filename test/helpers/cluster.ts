// A three-node nats-server cluster on loopback for failover tests: one server_name and
// JetStream store per node (in one temp dir), routes between every pair on free ports,
// and a wait until the JetStream meta group has a leader over all the nodes. Each node
// is a NatsServer (test/helpers/nats-server.ts): stop/pause/resume/restart by PID.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type NatsServer, sleep, startNatsServer } from "./nats-server.ts";

export interface ClusterNode extends NatsServer {
  /** Its server_name (n1, n2, ...), as JetStream names stream leaders and peers. */
  readonly name: string;
}

export interface Cluster {
  readonly nodes: readonly ClusterNode[];
  /** Every node's client URL, in node order. */
  readonly urls: string[];
  /** Resolves when the JetStream meta group has a leader and counts every node. */
  jetStreamReady(timeoutMs?: number): Promise<void>;
  /** SIGKILLs every node (resuming paused ones first) and removes the temp dir. */
  stopAll(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface ClusterOptions {
  /** Nodes (default 3). */
  size?: number;
  /** Config text for every node (e.g. ping_interval), after the generated lines. */
  extraConfig?: string;
}

/** The `cluster {}` block of one node: the same route list everywhere (a node drops the route to itself). */
export function clusterConfig(name: string, listenPort: number, routePorts: readonly number[]): string {
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(", ");
  return `cluster { name: ${name}, listen: 127.0.0.1:${listenPort}, routes: [${routes}] }`;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  // Ports are picked before the servers bind them: another process may take one first.
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryStartCluster(options);
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }
}

async function tryStartCluster(options: ClusterOptions): Promise<Cluster> {
  const size = options.size ?? 3;
  const root = mkdtempSync(join(tmpdir(), "svcmesh-cluster-"));
  // Every port fixed and distinct: a node picking its own (-1) could take a route port not bound yet.
  const ports = new Set<number>();
  while (ports.size < size * 3) ports.add(await freePort());
  const [routePorts, clientPorts, monitorPorts] = [0, 1, 2].map((k) => [...ports].slice(k * size, (k + 1) * size)) as [number[], number[], number[]];
  const nodes: ClusterNode[] = [];
  try {
    // Started together: each node keeps dialling the routes of the others until they are up.
    const started = await Promise.allSettled(routePorts.map(async (port, i) => {
      const name = `n${i + 1}`;
      const dir = join(root, name);
      mkdirSync(dir);
      const server = await startNatsServer({
        jetstream: true,
        port: clientPorts[i],
        monitorPort: monitorPorts[i],
        serverName: name,
        dir,
        extraConfig: [clusterConfig("mesh", port, routePorts), options.extraConfig ?? ""].join("\n"),
      });
      return Object.assign(server, { name });
    }));
    for (const r of started) if (r.status === "fulfilled") nodes.push(r.value);
    for (const r of started) if (r.status === "rejected") throw r.reason;
  } catch (e) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    rmSync(root, { recursive: true, force: true });
    throw e;
  }

  const cluster: Cluster = {
    nodes,
    get urls() { return nodes.map((n) => n.url); },
    async jetStreamReady(timeoutMs = 20_000) {
      for (const n of nodes) await waitForJetStreamMeta(n.monitorPort, size, timeoutMs);
    },
    async stopAll() {
      await Promise.allSettled(nodes.map((n) => n.stop()));
      rmSync(root, { recursive: true, force: true });
    },
    [Symbol.asyncDispose]: () => cluster.stopAll(),
  };
  return cluster;
}

/** Polls a monitoring endpoint until `ok(body)` holds; fails the test with the last body otherwise. */
export async function pollJson(url: string, ok: (body: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      last = await res.json();
      if (ok(last as Record<string, unknown>)) return last as Record<string, unknown>;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  assert.fail(`${url} did not reach the expected state within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** Waits until the node at `monitorPort` sees a JetStream meta leader in a group of `size`; returns the leader's name. */
export async function waitForJetStreamMeta(monitorPort: number, size: number, timeoutMs = 20_000): Promise<string> {
  const jsz = await pollJson(`http://127.0.0.1:${monitorPort}/jsz`, (b) => {
    const meta = b.meta_cluster as { leader?: string; cluster_size?: number } | undefined;
    return Boolean(meta?.leader) && meta?.cluster_size === size;
  }, timeoutMs);
  return String((jsz.meta_cluster as { leader: string }).leader);
}
