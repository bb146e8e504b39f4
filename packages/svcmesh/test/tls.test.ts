// mTLS: a nats-server that verifies client certificates, with a CA and certificates
// made by this test with openssl.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connect } from "svcmesh";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";

let dir: string;
let server: NatsServer;
let url: string;

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** A CA, and a certificate signed by it for `cn` with the given extensions. */
function makeCa(name: string): void {
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", `${name}-key.pem`, "-out", `${name}.pem`, "-subj", `/O=Mesh/CN=${name}`);
}

function makeCert(name: string, ca: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", `/O=Mesh/CN=${name}`);
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}-key.pem`, "-CAcreateserial", "-days", "2", "-out", `${name}.pem`, "-extfile", `${name}.ext`);
}

const file = (name: string) => join(dir, name);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "svcmesh-tls-"));
  makeCa("ca");
  makeCa("rogue-ca");
  makeCert("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  makeCert("claims", "ca", "extendedKeyUsage=clientAuth\n");
  makeCert("intruder", "rogue-ca", "extendedKeyUsage=clientAuth\n");
  server = await startNatsServer({
    extraConfig: `tls { cert_file: "${file("server.pem")}", key_file: "${file("server-key.pem")}", ca_file: "${file("ca.pem")}", verify: true, timeout: 2 }`,
  });
  url = `tls://127.0.0.1:${server.port}`;
});

after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("with a client certificate the mesh works over mTLS", async () => {
  const tls = { caFile: file("ca.pem"), certFile: file("claims.pem"), keyFile: file("claims-key.pem") };
  const mesh = await connect({ servers: url, name: "claims", tls });
  try {
    await mesh.serve({ name: "secure", version: "1.0.0", endpoints: { ping: { handler: (_r, ctx) => `pong for ${ctx.caller}` } } });
    assert.equal(await mesh.call("secure", "ping"), "pong for claims");
  } finally {
    await mesh.close();
  }
});

test("without a client certificate the connection is refused quickly, saying why", async () => {
  const started = Date.now();
  const e = await meshFailure(connect({ servers: url, name: "anonymous", tls: { caFile: file("ca.pem") } }));
  const took = Date.now() - started;
  assert.equal(e.code, "UNAVAILABLE");
  assert.match(e.message, /refused the TLS handshake/);
  assert.match(e.message, /client certificate/);
  assert.ok(took < 5_000, `refused after ${took} ms, not after nats.js's 20 s default`);
});

test("a certificate from another CA is refused, saying why", async () => {
  const e = await meshFailure(connect({ servers: url, name: "intruder", tls: { caFile: file("ca.pem"), certFile: file("intruder.pem"), keyFile: file("intruder-key.pem") } }));
  assert.equal(e.code, "UNAVAILABLE");
  assert.match(e.message, /refused the TLS handshake \(.+\)/);
});

test("SVCMESH_TLS_CA/CERT/KEY configure TLS from the environment: the CLI and services configured by env get through mTLS", () => {
  // A process of its own, as the CLI and the example services are: connect() with no tls option.
  const run = (env: Record<string, string>) => spawnSync(process.execPath, ["--input-type=module", "-e", `import { connect } from "svcmesh";
    try { const m = await connect({ servers: ${JSON.stringify(url)}, name: "env-tls", logLevel: "silent", audit: { enabled: false } }); console.log("connected"); await m.close(); }
    catch (e) { console.log(e.code + " " + e.message); }`], { cwd: import.meta.dirname, encoding: "utf8", timeout: 20_000, env: { ...process.env, ...env } });
  const ok = run({ SVCMESH_TLS_CA: file("ca.pem"), SVCMESH_TLS_CERT: file("claims.pem"), SVCMESH_TLS_KEY: file("claims-key.pem") });
  assert.equal(ok.stdout.trim(), "connected", ok.stderr);
  const noCert = run({ SVCMESH_TLS_CA: file("ca.pem") });
  assert.match(noCert.stdout, /^UNAVAILABLE .*client certificate/, noCert.stderr);
});

test("a server whose certificate no trusted CA signed: the error says which CA setting to give", async () => {
  const e = await meshFailure(connect({ servers: url, name: "untrusting", logLevel: "silent", tls: { certFile: file("claims.pem"), keyFile: file("claims-key.pem") } }));
  assert.equal(e.code, "UNAVAILABLE");
  assert.match(e.message, /not signed by a CA this process trusts \(tls\.caFile, or SVCMESH_TLS_CA\)/);
});
