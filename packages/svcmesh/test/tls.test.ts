// mTLS: a nats-server that verifies client certificates, with a CA and certificates
// made by this test with openssl.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec-key.pem");
  writeFileSync(file("garbage.pem"), "not a PEM file\n");
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

// ---- certificate and key files checked before dialling ----

/** connect() with a client certificate and key, the CA right. */
const withPair = (certFile: string, keyFile: string) =>
  meshFailure(connect({ servers: url, name: "claims", logLevel: "silent", tls: { caFile: file("ca.pem"), certFile: file(certFile), keyFile: file(keyFile) } }));

test("a key that is not the certificate's: BAD_REQUEST naming tls.keyFile and tls.certFile, not a bare TLS error", async () => {
  const e = await withPair("claims.pem", "intruder-key.pem");
  assert.equal(e.code, "BAD_REQUEST", e.message);
  assert.match(e.message, /tls\.keyFile \(\S+\/intruder-key\.pem\) is not the private key of the certificate in tls\.certFile \(\S+\/claims\.pem\) \(O=Mesh, CN=claims\)/);
  assert.deepEqual(e.details, { option: "tls.keyFile", certificate: "tls.certFile" });
  // A key of another type (EC, for an RSA certificate), which OpenSSL's own check lets through.
  const ec = await withPair("claims.pem", "ec-key.pem");
  assert.equal(ec.code, "BAD_REQUEST", ec.message);
  assert.match(ec.message, /tls\.keyFile \(\S+\/ec-key\.pem\) is not the private key of the certificate in tls\.certFile/);
  // The same as PEM text.
  const text = await meshFailure(connect({ servers: url, name: "claims", logLevel: "silent", tls: { caFile: file("ca.pem"), cert: readFileSync(file("claims.pem"), "utf8"), key: readFileSync(file("intruder-key.pem"), "utf8") } }));
  assert.equal(text.code, "BAD_REQUEST", text.message);
  assert.match(text.message, /tls\.key is not the private key of the certificate in tls\.cert \(O=Mesh, CN=claims\)/);
});

test("an unreadable TLS file, or one without PEM, is named with what is wrong", async () => {
  const missing = await withPair("claims.pem", "nosuch-key.pem");
  assert.equal(missing.code, "BAD_REQUEST", missing.message);
  assert.match(missing.message, /tls\.keyFile: cannot read \S+\/nosuch-key\.pem \(no such file\)/);
  const swapped = await withPair("claims-key.pem", "claims.pem");
  assert.equal(swapped.code, "BAD_REQUEST", swapped.message);
  assert.match(swapped.message, /tls\.certFile \(\S+\/claims-key\.pem\) holds no PEM certificate .*it holds a private key/);
  const noKey = await withPair("claims.pem", "garbage.pem");
  assert.equal(noKey.code, "BAD_REQUEST", noKey.message);
  assert.match(noKey.message, /tls\.keyFile \(\S+\/garbage\.pem\) holds no PEM private key/);
  const ca = await meshFailure(connect({ servers: url, name: "claims", logLevel: "silent", tls: { caFile: file("garbage.pem"), certFile: file("claims.pem"), keyFile: file("claims-key.pem") } }));
  assert.equal(ca.code, "BAD_REQUEST", ca.message);
  assert.match(ca.message, /tls\.caFile \(\S+\/garbage\.pem\) holds no PEM certificate/);
});

test("from SVCMESH_TLS_CERT/KEY, a key that is not the certificate's names the environment variables", () => {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", `import { connect } from "svcmesh";
    try { const m = await connect({ servers: ${JSON.stringify(url)}, name: "env-tls", logLevel: "silent", audit: { enabled: false } }); console.log("connected"); await m.close(); }
    catch (e) { console.log(e.code + " " + e.message); }`], {
    cwd: import.meta.dirname,
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, SVCMESH_TLS_CA: file("ca.pem"), SVCMESH_TLS_CERT: file("claims.pem"), SVCMESH_TLS_KEY: file("intruder-key.pem") },
  });
  assert.match(r.stdout, /^BAD_REQUEST connect\(\): SVCMESH_TLS_KEY \(\S+\/intruder-key\.pem\) is not the private key of the certificate in SVCMESH_TLS_CERT \(\S+\/claims\.pem\)/, r.stdout + r.stderr);
});
