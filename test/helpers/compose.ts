// A docker-compose file of docker/ read as the compose tests need it (services, commands,
// environment, nats-server flags), and its NATS nodes started as native nats-server
// processes on loopback: no Docker engine.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { killAll, run, type Started, within } from "./child.ts";
import { pollJson, waitForJetStreamMeta } from "./cluster.ts";
import { freePort, natsServerBinary, sleep } from "./nats-server.ts";

export const root = fileURLToPath(new URL("../..", import.meta.url));

export interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string } | string;
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  env_file?: string[] | string;
  depends_on?: string[] | Record<string, unknown>;
  volumes?: string[];
  restart?: string;
}
export interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

export function commandOf(s: ComposeService): string[] {
  if (Array.isArray(s.command)) return s.command.map(String);
  return typeof s.command === "string" ? s.command.split(/\s+/).filter(Boolean) : [];
}

export function envOf(s: ComposeService): Record<string, string> {
  const env: Record<string, string> = {};
  if (Array.isArray(s.environment)) {
    for (const kv of s.environment) {
      const i = kv.indexOf("=");
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
  } else {
    for (const [k, v] of Object.entries(s.environment ?? {})) if (v !== null) env[k] = String(v);
  }
  return env;
}

export function envFilesOf(s: ComposeService): string[] {
  return Array.isArray(s.env_file) ? s.env_file : s.env_file === undefined ? [] : [s.env_file];
}

/** An env file as compose reads it: KEY=VALUE lines; blank lines and `#` comments skipped. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const l = line.trim();
    const i = l.indexOf("=");
    if (l === "" || l.startsWith("#") || i <= 0) continue;
    env[l.slice(0, i)] = l.slice(i + 1);
  }
  return env;
}

export function dependsOn(s: ComposeService): string[] {
  return Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
}

/** Bind mounts (`./src:/target[:ro]`): source as written (relative to docker/), target. */
export function bindMounts(s: ComposeService): { source: string; target: string }[] {
  return (s.volumes ?? []).map((v) => v.split(":")).filter(([src]) => src!.startsWith(".") || src!.startsWith("/")).map(([source, target]) => ({ source: source!, target: target! }));
}

// nats-server's flags as the compose commands may spell them (`--f v`, `--f=v`, `-f v`).
const ALIASES: Record<string, string> = {
  n: "server_name", name: "server_name", p: "port", m: "http_port", a: "addr", net: "addr",
  js: "jetstream", sd: "store_dir", c: "config",
};
const BOOLEAN = new Set(["jetstream", "D", "V", "DV", "T"]);

export interface Flag {
  name: string;
  value: string | undefined;
  /** Index of the argument holding the value (to rewrite it), or of the flag itself. */
  at: number;
  inline: boolean;
}

export function parseFlags(args: readonly string[]): Map<string, Flag> {
  const flags = new Map<string, Flag>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    assert.ok(arg.startsWith("-"), `unexpected argument ${JSON.stringify(arg)} in ${args.join(" ")}`);
    const eq = arg.indexOf("=");
    const raw = (eq < 0 ? arg : arg.slice(0, eq)).replace(/^--?/, "");
    const name = ALIASES[raw] ?? raw;
    if (eq >= 0) flags.set(name, { name, value: arg.slice(eq + 1), at: i, inline: true });
    else if (BOOLEAN.has(name)) flags.set(name, { name, value: undefined, at: i, inline: true });
    else flags.set(name, { name, value: args[++i], at: i, inline: false });
  }
  return flags;
}

/** The example service a compose service runs, if it runs service.js <name>. */
export function exampleOf(s: ComposeService): string | undefined {
  const cmd = commandOf(s);
  const i = cmd.findIndex((a) => a.endsWith("packages/examples/dist/service.js"));
  return i >= 0 ? cmd[i + 1] : undefined;
}

export interface ComposeFile {
  compose: Compose;
  services: [string, ComposeService][];
  natsNodes: [string, ComposeService][];
  nodeNames: string[];
  nodeFlags: Map<string, Map<string, Flag>>;
  flag(node: string, name: string): string | undefined;
  clientPort(node: string): number;
  clusterPort(node: string): number;
  /** Compose services that run the workspace's image (built from docker/Dockerfile). */
  appServices: [string, ComposeService][];
}

/**
 * Compose's variable interpolation: `${NAME}`, `${NAME:-default}`, `${NAME:?error}` (an
 * unset or empty NAME fails, as compose does) and `$$` for a literal `$`.
 */
export function interpolate(text: string, vars: Readonly<Record<string, string | undefined>>, what: string): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (match, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (match === "$$") return "$";
    const value = vars[name!];
    const unset = op?.startsWith(":") ? !value : value === undefined;
    if (!unset) return value!;
    if (op?.endsWith("?")) throw new Error(`${what}: required variable ${name} is missing a value: ${arg}`);
    return op?.endsWith("-") ? arg! : "";
  });
}

/**
 * `docker/<file>`, parsed with YAML merge keys as compose reads it, its `${...}` variables
 * taken from `vars` (compose's --env-file).
 */
export function readCompose(file: string, vars: Readonly<Record<string, string | undefined>> = {}): ComposeFile {
  const compose = parse(interpolate(readFileSync(join(root, "docker", file), "utf8"), vars, file), { merge: true }) as Compose;
  const services = Object.entries(compose.services ?? {});
  const natsNodes = services.filter(([, s]) => /^nats:2\.9(\b|$|-)/.test(s.image ?? ""));
  const nodeFlags = new Map(natsNodes.map(([n, s]) => [n, parseFlags(commandOf(s))]));
  const flag = (node: string, name: string) => nodeFlags.get(node)!.get(name)?.value;
  return {
    compose,
    services,
    natsNodes,
    nodeNames: natsNodes.map(([n]) => n),
    nodeFlags,
    flag,
    clientPort: (node) => Number(flag(node, "port") ?? 4222),
    clusterPort: (node) => Number(new URL(flag(node, "cluster")!).port),
    appServices: services.filter(([, s]) => s.build !== undefined),
  };
}

export interface NativeCluster {
  nodes: { name: string; started: Started }[];
  /** A compose URL naming a node (nats://nats-1:4222) as the loopback URL of its client or cluster port. */
  mapUrl(u: string, kind: "client" | "cluster"): string;
  /** A NATS_URL list of nodes, mapped to loopback. */
  mapServers(list: string): string;
  monitorPort(node: string): number;
}

/**
 * Starts the compose file's NATS nodes natively with their own flags, hosts and ports
 * mapped to loopback and store_dir under `dir`; `--config` is read from a per-node root
 * under `dir` holding copies of the node's bind mounts (`hostPath` says where a mount's
 * source is on this machine). Resolves when the routes and the JetStream meta group formed.
 */
export async function startNativeCluster(
  file: ComposeFile,
  dir: string,
  start: (cmd: string, args: string[]) => Started,
  hostPath: (source: string) => string = (s) => join(root, "docker", s),
): Promise<NativeCluster> {
  const bin = natsServerBinary();
  const ports = new Map<string, { client: number; cluster: number; http: number }>();
  for (const n of file.nodeNames) ports.set(n, { client: await freePort(), cluster: await freePort(), http: await freePort() });
  const mapUrl = (u: string, kind: "client" | "cluster") => {
    const url = new URL(u.trim());
    const p = ports.get(url.hostname) ?? assert.fail(`${u} names no NATS node of the compose file`);
    return `${url.protocol}//${userInfo(url)}127.0.0.1:${p[kind]}`;
  };
  const nodes = file.natsNodes.map(([n, s]) => {
    const args = [...commandOf(s)];
    const p = ports.get(n)!;
    const fsRoot = join(dir, n, "root");
    for (const m of bindMounts(s)) {
      mkdirSync(dirname(join(fsRoot, m.target)), { recursive: true });
      copyFileSync(hostPath(m.source), join(fsRoot, m.target));
    }
    const rewrite: Record<string, (v: string) => string> = {
      port: () => String(p.client),
      http_port: () => String(p.http),
      cluster: (v) => `${new URL(v).protocol}//${userInfo(new URL(v))}127.0.0.1:${p.cluster}`,
      routes: (v) => v.split(",").map((r) => mapUrl(r, "cluster")).join(","),
      store_dir: (v) => join(dir, n, v),
      config: (v) => join(fsRoot, v),
    };
    for (const f of parseFlags(args).values()) {
      const fn = rewrite[f.name];
      if (!fn || f.value === undefined) continue;
      const value = fn(f.value);
      args[f.at] = f.inline ? `${args[f.at]!.slice(0, args[f.at]!.indexOf("=") + 1)}${value}` : value;
    }
    return { name: n, started: start(bin, ["--addr", "127.0.0.1", ...args]) };
  });

  for (const { name, started } of nodes) {
    const { http } = ports.get(name)!;
    try {
      await pollJson(`http://127.0.0.1:${http}/routez`, (b) => b.num_routes === 2, 20_000);
    } catch (e) {
      assert.fail(`${(e as Error).message}\n${name}'s output:\n${started.output()}`);
    }
  }
  // JetStream forms one meta group over the three nodes.
  const leader = await waitForJetStreamMeta(ports.get(file.nodeNames[0]!)!.http, 3, 30_000);
  assert.ok(file.nodeNames.includes(leader), `meta leader ${leader}`);
  return {
    nodes,
    mapUrl,
    mapServers: (list) => list.split(",").map((u) => mapUrl(u, "client")).join(","),
    monitorPort: (node) => ports.get(node)!.http,
  };
}

/** A URL's `user:password@` (route credentials), or "". */
function userInfo(url: URL): string {
  return url.username ? `${url.username}${url.password ? `:${url.password}` : ""}@` : "";
}

/** The arguments of a `node ...` compose command. */
export function nodeArgs(s: ComposeService): string[] {
  const [cmd, ...args] = commandOf(s);
  assert.equal(cmd, "node");
  return args;
}

/**
 * A compose service's environment as compose gives it: its env files (`hostPath` says where
 * they are here), then `environment` over them; NATS_URL mapped to the native nodes, and a
 * shorter wait for the demo client.
 */
export function serviceEnv(s: ComposeService, cluster: Pick<NativeCluster, "mapServers">, hostPath: (source: string) => string = (f) => join(root, "docker", f)): NodeJS.ProcessEnv {
  const env: Record<string, string> = {};
  for (const f of envFilesOf(s)) Object.assign(env, parseEnvFile(readFileSync(hostPath(f), "utf8")));
  Object.assign(env, envOf(s));
  return { ...process.env, ...env, NATS_URL: cluster.mapServers(env.NATS_URL!), SVCMESH_DEMO_WAIT_MS: "30000" };
}

/** Processes and temp dirs of a native run; `cleanup` (for `after`) kills and removes them all. */
export function nativeRun(): {
  start(cmd: string, args: string[], env: NodeJS.ProcessEnv): Started;
  tempDir(prefix: string): string;
  cleanup(): Promise<void>;
} {
  const procs: ChildProcess[] = [];
  const dirs: string[] = [];
  return {
    start: (cmd, args, env) => run(procs, cmd, args, env, root),
    tempDir(prefix) {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
    async cleanup() {
      killAll(procs);
      await sleep(100);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** The demo client's run went as the story says: exit 0, both payments instances found and paid, the bad claim refused. */
export function assertStory(code: number | null, output: string, report: () => string): void {
  assert.equal(code, 0, report());
  assert.match(output, /^found 2 instance\(s\) of payments$/m, report());
  const counts = [...output.matchAll(/instance \S+\s+served (\d+) claims?$/gm)].map((m) => Number(m[1]));
  assert.equal(counts.length, 2, report());
  assert.ok(counts.every((c) => c > 0), report());
  assert.match(output, /C-1003 .*FORBIDDEN/, report());
}

export interface Running {
  name: string;
  started: Started;
}

/** The tail of each process's output, for a failure message. */
export function outputs(running: readonly Running[]): string {
  return running.map((r) => `--- ${r.name}\n${r.started.output().slice(-2_000)}`).join("\n");
}

/** SIGTERM, as `docker compose down` sends: the services stop gracefully (exit 0), then the nodes. */
export async function stopAll(running: readonly Running[], cluster: NativeCluster): Promise<void> {
  for (const r of running) r.started.proc.kill("SIGTERM");
  for (const r of running) assert.equal(await within(15_000, `${r.name} stopping`, r.started.exit), 0, `${r.name}:\n${r.started.output()}`);
  for (const { started } of cluster.nodes) started.proc.kill("SIGTERM");
  await within(15_000, "nats nodes stopping", Promise.all(cluster.nodes.map((n) => n.started.exit)));
}
