// connect()'s TLS material, checked before dialling. nats.js reads the files when it
// dials and reports any problem with them (a key that is not the certificate's, a file
// that is missing or holds no PEM) as a bare "TLS": here each one is named, with what
// is wrong. nats.js is still given the file names, so it rereads them on reconnect (a
// renewed certificate is picked up).
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { MeshError } from "./errors.js";
import type { ConnectOptions } from "./mesh.js";

/** connect()'s `tls` option (or what SVCMESH_TLS_* give). */
type TlsFiles = NonNullable<ConnectOptions["tls"]>;

type Part = "ca" | "cert" | "key";

/** Where one part came from, named as the user gave it: connect's option or the environment variable. */
interface Source {
  name: string;
  /** Absent for the PEM text options (tls.ca, tls.cert, tls.key). */
  file?: string;
  text: string;
}

const ENV_NAMES: Record<Part, string> = { ca: "SVCMESH_TLS_CA", cert: "SVCMESH_TLS_CERT", key: "SVCMESH_TLS_KEY" };

const PEM_CERTIFICATE = /-----BEGIN (TRUSTED )?CERTIFICATE-----/;
const PEM_PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----/;

function bad(message: string, source: Source): MeshError {
  return new MeshError("BAD_REQUEST", `connect(): ${message}`, { details: { option: source.name, ...(source.file !== undefined ? { file: source.file } : {}) } });
}

/** A part as nats.js will use it: the file wins over the text (as in nats.js). */
function sourceOf(tls: TlsFiles, part: Part, fromEnv: boolean): Source | undefined {
  const file = tls[`${part}File`];
  if (file !== undefined) {
    const source = { name: fromEnv ? ENV_NAMES[part] : `tls.${part}File`, file, text: "" };
    if (file === "") throw bad(`${source.name} is empty: give the file's path, or leave it out`, source);
    try {
      source.text = readFileSync(file, "utf8");
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw bad(`${source.name}: cannot read ${file} (${err.code === "ENOENT" ? "no such file" : err.code ?? err.message})`, source);
    }
    return source;
  }
  const text = tls[part];
  return text === undefined ? undefined : { name: `tls.${part}`, text };
}

function described(s: Source): string {
  return s.file === undefined ? s.name : `${s.name} (${s.file})`;
}

/**
 * Throws MeshError BAD_REQUEST naming the setting (tls.certFile, or SVCMESH_TLS_CERT
 * when the environment gave it) whose file cannot be read or holds no PEM, or whose key
 * is not the certificate's. `fromEnv`: the settings came from SVCMESH_TLS_*.
 */
export function checkTls(tls: TlsFiles, fromEnv: boolean): void {
  const ca = sourceOf(tls, "ca", fromEnv);
  const cert = sourceOf(tls, "cert", fromEnv);
  const key = sourceOf(tls, "key", fromEnv);
  if (ca && !PEM_CERTIFICATE.test(ca.text)) throw bad(`${described(ca)} holds no PEM certificate (the CA to trust, -----BEGIN CERTIFICATE-----)`, ca);
  let x509: X509Certificate | undefined;
  if (cert) {
    if (!PEM_CERTIFICATE.test(cert.text)) {
      const swapped = PEM_PRIVATE_KEY.test(cert.text) ? `: it holds a private key (are the certificate and key settings swapped?)` : "";
      throw bad(`${described(cert)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)${swapped}`, cert);
    }
    try {
      x509 = new X509Certificate(cert.text);
    } catch (e) {
      throw bad(`${described(cert)} holds no readable PEM certificate (${(e as Error).message})`, cert);
    }
  }
  let privateKey: KeyObject | undefined;
  if (key) {
    if (!PEM_PRIVATE_KEY.test(key.text)) {
      const swapped = PEM_CERTIFICATE.test(key.text) ? `: it holds a certificate (are the certificate and key settings swapped?)` : "";
      throw bad(`${described(key)} holds no PEM private key (-----BEGIN PRIVATE KEY-----)${swapped}`, key);
    }
    // Checked by its text: OpenSSL's error for a key without its passphrase says only "interrupted or cancelled".
    if (/ENCRYPTED/.test(key.text)) throw bad(`${described(key)} is encrypted (passphrase-protected): give the key unencrypted`, key);
    try {
      privateKey = createPrivateKey(key.text);
    } catch (e) {
      throw bad(`${described(key)} holds no readable PEM private key (${(e as Error).message})`, key);
    }
  }
  if (!cert || !key || !x509 || !privateKey) return;
  // X509Certificate compares the keys themselves: OpenSSL's check in createSecureContext
  // lets a key of another type than the certificate's (an EC key, an RSA certificate) through.
  if (!x509.checkPrivateKey(privateKey)) {
    throw new MeshError(
      "BAD_REQUEST",
      `connect(): ${described(key)} is not the private key of the certificate in ${described(cert)} (${x509.subject.replace(/\n/g, ", ")}): give the key that certificate was issued for`,
      { details: { option: key.name, certificate: cert.name } },
    );
  }
  try {
    createSecureContext({ cert: cert.text, key: key.text });
  } catch (e) {
    throw new MeshError("BAD_REQUEST", `connect(): TLS refuses the certificate in ${described(cert)} with the key in ${described(key)}: ${(e as Error).message}`, {
      details: { option: key.name, certificate: cert.name },
    });
  }
}
