// Why a connection to NATS failed, in words an operator can act on. Under TLS 1.3 a
// server that refuses our certificate (or wants one we did not send) makes nats.js
// wait out its connect timeout and report only TIMEOUT: the alert is lost. A TLS 1.2
// handshake reports the alert at once, so after such a timeout one short TLS 1.2
// probe names the cause (NATS-NOTES.md §2).
import { type ConnectionOptions, connect as natsConnect } from "nats";
import { MeshError } from "./errors.js";

const PROBE_TIMEOUT_MS = 1_000;

export async function connectFailure(e: unknown, servers: string | string[], options: ConnectionOptions): Promise<MeshError> {
  const where = String(servers);
  const code = (e as { code?: string }).code;
  let reason = (e as Error).message || String(e);
  if (code === "TIMEOUT" && usesTls(servers, options)) {
    const alert = await tlsAlert(options);
    reason = alert
      ? `the server refused the TLS handshake (${alert})${options.tls?.certFile || options.tls?.cert ? "" : ": it may require a client certificate (tls.certFile and tls.keyFile)"}`
      : `TIMEOUT (no TLS handshake completed; check the server's TLS settings and tls.caFile)`;
  }
  // Not the server's state but the configuration: say what to change.
  if (code === "ERR_INVALID_URL") {
    return new MeshError("BAD_REQUEST", `cannot connect to NATS at ${where}: not a server URL (like nats://host:4222 or tls://host:4222)`, { cause: e });
  }
  if (code === "SERVER_OPT_NA" && reason === "tls") {
    reason = "TLS was asked for (tls options or a tls:// URL), but the server does not offer TLS";
  } else if (/unable to verify|self[- ]signed|unable to get (local )?issuer/i.test(reason)) {
    reason += ": the server's certificate is not signed by a CA this process trusts (tls.caFile, or SVCMESH_TLS_CA)";
  }
  return new MeshError("UNAVAILABLE", `cannot connect to NATS at ${where}: ${reason}`, { cause: e });
}

function usesTls(servers: string | string[], options: ConnectionOptions): boolean {
  return Boolean(options.tls) || (Array.isArray(servers) ? servers : String(servers).split(",")).some((s) => s.trim().startsWith("tls://"));
}

/** The TLS alert a TLS 1.2 handshake gets, or undefined if it gets none in time. */
async function tlsAlert(options: ConnectionOptions): Promise<string | undefined> {
  try {
    const probe = await natsConnect({
      ...options,
      tls: { ...options.tls, maxVersion: "TLSv1.2" } as ConnectionOptions["tls"],
      timeout: PROBE_TIMEOUT_MS,
      reconnect: false,
      maxReconnectAttempts: 0,
      name: `${options.name ?? "svcmesh"}-tls-probe`,
    });
    await probe.close();
    return undefined; // it worked over TLS 1.2: the failure was something else
  } catch (probeError) {
    const message = (probeError as Error).message ?? "";
    const alert = /alert ([a-z ]+)/i.exec(message)?.[1]?.trim();
    const code = (probeError as { code?: string }).code;
    return alert ? `${alert}${code && code !== "TIMEOUT" ? `, ${code}` : ""}` : code && code !== "TIMEOUT" ? code : undefined;
  }
}
