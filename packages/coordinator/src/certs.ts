/**
 * Development certificate generator behind `coordinator init-certs`.
 *
 * Produces a throw-away certificate authority plus server, worker and client
 * certificates so that a local dce cluster can run with TLS and mutual TLS
 * without an openssl binary. Each worker gets its own certificate: its CN is the
 * identity the coordinator charges the worker's wrong results against. Everything is generated in-process with WebCrypto
 * (ECDSA P-256, SHA-256) via `@peculiar/x509`.
 *
 * FOR DEVELOPMENT ONLY: the CA private key is written next to the certificates
 * it signs. Production deployments should issue certificates from a real PKI.
 *
 * @module
 */
import "reflect-metadata";
import { createPrivateKey, KeyObject, webcrypto } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { clipCodePoints } from "@dce/core";
import * as x509 from "@peculiar/x509";
import { DEFAULT_DEV_WORKER_CERTS, MAX_DEV_WORKER_CERTS } from "./dev-cert-counts.js";

/** Absolute paths of the PEM files written by {@link generateDevCertificates}. */
export interface DevCertificatePaths {
  /** Directory holding all files (absolute). */
  readonly dir: string;
  /** Self-signed dev CA certificate (`ca.pem`). Trust anchor for every peer. */
  readonly caCert: string;
  /** Dev CA private key (`ca-key.pem`, mode 0600). Only needed to issue more certificates. */
  readonly caKey: string;
  /** Coordinator server certificate (`server.pem`). */
  readonly serverCert: string;
  /** Coordinator server private key (`server-key.pem`, mode 0600). */
  readonly serverKey: string;
  /** One client certificate per worker (`worker-1.pem` … `worker-N.pem`, CN `worker-1` …), in order. */
  readonly workers: readonly DevWorkerCertificate[];
  /** Job-submitting client certificate (`client.pem`). */
  readonly clientCert: string;
  /** Job-submitting client private key (`client-key.pem`, mode 0600). */
  readonly clientKey: string;
  /** True when a CA was already in the directory and has been replaced (`replaceCa`). */
  readonly replacedCa: boolean;
}

/** One worker's certificate files from {@link generateDevCertificates}. */
export interface DevWorkerCertificate {
  /** The certificate's CN: the worker identity the coordinator sees (`worker-<i>`). */
  readonly identity: string;
  /** Client certificate (`worker-<i>.pem`). */
  readonly cert: string;
  /** Its private key (`worker-<i>-key.pem`, mode 0600). */
  readonly key: string;
}

/** Options for {@link generateDevCertificates}. */
export interface DevCertificateOptions {
  /**
   * Output directory; created recursively. Existing files with the same names are
   * replaced, except a CA: see `replaceCa`.
   */
  outDir: string;
  /**
   * Replace a CA (`ca.pem` or `ca-key.pem`) already in `outDir`. Every certificate the old
   * CA signed then stops being trusted. Default false: {@link ExistingCaError}.
   */
  replaceCa?: boolean;
  /**
   * Names the server certificate is valid for. Entries that parse as IPv4/IPv6
   * addresses become IP subjectAltNames, everything else a DNS subjectAltName.
   * Defaults to {@link DEFAULT_DEV_CERT_HOSTS}.
   */
  hosts?: string[];
  /**
   * Worker certificates to write, one per worker process (default
   * {@link DEFAULT_DEV_WORKER_CERTS}; 0 to {@link MAX_DEV_WORKER_CERTS}). More can be issued
   * later with {@link issueWorkerCertificate}.
   */
  workers?: number;
  /** Lifetime in days counted from `now` (default 825, the common browser maximum). */
  validDays?: number;
  /** Reference time (default: the current time). Certificates are valid from `now - 1h`. */
  now?: Date;
}

/** Default subjectAltNames of the server certificate. */
export const DEFAULT_DEV_CERT_HOSTS: readonly string[] = ["localhost", "127.0.0.1", "::1"];

/** Default certificate lifetime in days. */
export const DEFAULT_DEV_CERT_VALID_DAYS = 825;

/**
 * {@link generateDevCertificates} found a CA in `outDir` and was not asked to replace it:
 * a new CA would leave every certificate the current one signed untrusted.
 */
export class ExistingCaError extends Error {
  override readonly name = "ExistingCaError";
  /** The CA certificate found (absolute path). */
  readonly caCert: string;
  constructor(caCert: string) {
    super(`${caCert} already exists; a new CA would invalidate every certificate it signed (pass replaceCa to replace it)`);
    this.caCert = caCert;
  }
}

/**
 * Leaf certificates in a dev certificate directory, by file name without `.pem`: the
 * server, the client, and workers (`worker-1`, or `worker-<name>` from {@link issueWorkerCertificate}).
 */
export type DevCertificateRole = "server" | "client" | `worker-${string}`;

const ALGORITHM: webcrypto.EcKeyGenParams = {
  name: "ECDSA",
  namedCurve: "P-256",
};
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = {
  name: "ECDSA",
  hash: "SHA-256",
};
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

/**
 * Generates a development CA and the coordinator, worker and client certificates.
 *
 * Files written to `outDir` (created if missing):
 * - `ca.pem` / `ca-key.pem`: self-signed CA "CN=dce dev CA" (basicConstraints CA:true, critical;
 *   keyUsage keyCertSign + cRLSign; subjectKeyIdentifier).
 * - `server.pem` / `server-key.pem`: "CN=dce-coordinator", subjectAltName from `hosts`,
 *   extendedKeyUsage serverAuth.
 * - `worker-<i>.pem` / `worker-<i>-key.pem` for i = 1 … `workers`: "OU=worker, CN=worker-<i>",
 *   extendedKeyUsage clientAuth and serverAuth (its panel server for peers). One per worker process: the coordinator charges wrong
 *   results to the worker and to its CN, and quarantines a CN whose workers keep returning them.
 * - `client.pem` / `client-key.pem`: "OU=client, CN=dce-client", extendedKeyUsage clientAuth.
 *
 * All keys are ECDSA P-256 written as unencrypted PKCS#8 PEM with mode 0600; certificates are
 * SHA-256 signed, have random positive 128-bit serial numbers, are valid from `now - 1h` to
 * `now + validDays`, and are written with mode 0644. Leaf certificates carry keyUsage
 * digitalSignature (keyEncipherment is not defined for EC keys, RFC 5480 §3),
 * basicConstraints CA:false and authority/subject key identifiers.
 *
 * This is for development and tests only; production should use certificates issued by a real
 * PKI (the CA key written here is unprotected).
 *
 * @returns Absolute paths of every file written.
 * @throws ExistingCaError if `outDir` holds a CA and `replaceCa` is not set (nothing is written).
 * @throws If `hosts` is empty, `validDays` is not a positive finite number, `workers` is not an
 *   integer from 0 to {@link MAX_DEV_WORKER_CERTS}, or writing fails.
 */
export async function generateDevCertificates(options: DevCertificateOptions): Promise<DevCertificatePaths> {
  const hosts = options.hosts ?? [...DEFAULT_DEV_CERT_HOSTS];
  const validDays = options.validDays ?? DEFAULT_DEV_CERT_VALID_DAYS;
  const workerCount = options.workers ?? DEFAULT_DEV_WORKER_CERTS;
  if (!Number.isInteger(workerCount) || workerCount < 0 || workerCount > MAX_DEV_WORKER_CERTS) {
    throw new Error(`generateDevCertificates: workers must be an integer from 0 to ${MAX_DEV_WORKER_CERTS}, got ${workerCount}`);
  }
  const now = options.now ?? new Date();
  if (hosts.length === 0) throw new Error("generateDevCertificates: hosts must not be empty");
  if (hosts.some((h) => h.trim() === "")) {
    throw new Error("generateDevCertificates: hosts must not contain empty names");
  }
  if (!Number.isFinite(validDays) || validDays <= 0) {
    throw new Error(`generateDevCertificates: validDays must be a positive number, got ${validDays}`);
  }
  if (Number.isNaN(now.getTime())) throw new Error("generateDevCertificates: now is an invalid Date");
  const dir = resolve(options.outDir);
  const replacedCa = existsSync(join(dir, "ca.pem")) || existsSync(join(dir, "ca-key.pem"));
  if (replacedCa && options.replaceCa !== true) throw new ExistingCaError(join(dir, "ca.pem"));

  const notBefore = new Date(now.getTime() - HOUR_MS);
  const notAfter = new Date(now.getTime() + validDays * DAY_MS);
  const crypto = webcrypto;

  // Certificate authority.
  const caKeys = await generateKeyPair();
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: "CN=dce dev CA",
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const issueLeaf = (
    subject: string,
    usage: x509.ExtendedKeyUsage | readonly x509.ExtendedKeyUsage[],
    extra: x509.Extension[] = [],
  ) => issueLeafCertificate({ cert: ca, privateKey: caKeys.privateKey }, subject, usage, { notBefore, notAfter }, extra);

  const san = new x509.SubjectAlternativeNameExtension(
    hosts.map((host) => {
      const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
      return isIP(bare) !== 0 ? { type: "ip" as const, value: bare } : { type: "dns" as const, value: host };
    }),
    false,
  );
  const server = await issueLeaf("CN=dce-coordinator", x509.ExtendedKeyUsage.serverAuth, [san]);
  const workers: { identity: string; issued: IssuedLeaf }[] = [];
  for (let i = 1; i <= workerCount; i++) {
    const identity = `worker-${i}`;
    workers.push({ identity, issued: await issueLeaf(`OU=worker, CN=${identity}`, WORKER_USAGES) });
  }
  const client = await issueLeaf("OU=client, CN=dce-client", x509.ExtendedKeyUsage.clientAuth);

  await mkdir(dir, { recursive: true });
  const files = (stem: string) => ({ cert: join(dir, `${stem}.pem`), key: join(dir, `${stem}-key.pem`) });
  const paths: DevCertificatePaths = {
    dir,
    caCert: join(dir, "ca.pem"),
    caKey: join(dir, "ca-key.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    workers: workers.map((w) => ({ identity: w.identity, ...files(w.identity) })),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem"),
    replacedCa,
  };
  // Keys first, so a certificate never exists on disk without its key.
  await writeFileAtomic(paths.caKey, privateKeyPem(caKeys.privateKey), KEY_MODE);
  await writeFileAtomic(paths.caCert, ca.toString("pem"), CERT_MODE);
  const leaves: [{ cert: string; key: string }, IssuedLeaf][] = [
    [files("server"), server],
    ...workers.map((w): [{ cert: string; key: string }, IssuedLeaf] => [files(w.identity), w.issued]),
    [files("client"), client],
  ];
  for (const [file, issued] of leaves) {
    await writeFileAtomic(file.key, privateKeyPem(issued.keys.privateKey), KEY_MODE);
    await writeFileAtomic(file.cert, issued.cert.toString("pem"), CERT_MODE);
  }
  return paths;
}

/**
 * Reads the CA certificate and the certificate/key pair of one role (e.g. `server`,
 * `worker-1`) from a directory written by {@link generateDevCertificates}, in the shape `tls.createServer` / `tls.connect` accept
 * (`{ ca, cert, key }` PEM strings). Development use only.
 */
export function loadTlsFiles(dir: string, role: DevCertificateRole): { ca: string; cert: string; key: string } {
  const read = (name: string): string => readFileSync(join(dir, name), "utf8");
  return {
    ca: read("ca.pem"),
    cert: read(`${role}.pem`),
    key: read(`${role}-key.pem`),
  };
}

/** Options of {@link issueWorkerCertificate}. */
export interface WorkerCertificateOptions {
  /** Folder holding `ca.pem` and `ca-key.pem` (from {@link generateDevCertificates}); the new files go here too. */
  dir: string;
  /** The worker's identity, written as the certificate's CN: 1 to 64 characters from A-Z a-z 0-9 . _ -. */
  name: string;
  /** Lifetime in days counted from `now` (default 825). */
  validDays?: number;
  /** Reference time (default: the current time). The certificate is valid from `now - 1h`. */
  now?: Date;
}

/**
 * A worker certificate is a client certificate (to the coordinator) and a server
 * certificate (its panel server, `--peer-listen`, read by other workers): Node refuses a
 * server certificate whose extendedKeyUsage lacks serverAuth ("unsupported certificate
 * purpose"). Covered by "peer/panel-server.test.ts" in the worker.
 */
const WORKER_USAGES = [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth] as const;

/** Worker names {@link issueWorkerCertificate} accepts; they become file names too. */
const WORKER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Issues one more worker certificate from the development CA in `dir`: subject
 * "OU=worker, CN=<name>", extendedKeyUsage clientAuth and serverAuth, written as `worker-<name>.pem`
 * and `worker-<name>-key.pem` (mode 0600). The coordinator takes the CN as the
 * worker's identity, so give each worker (or each machine) its own.
 *
 * @returns the absolute paths of the certificate and key.
 * @throws if the name is not valid, the CA files cannot be read, or `validDays` is not positive.
 */
export async function issueWorkerCertificate(o: WorkerCertificateOptions): Promise<{ cert: string; key: string }> {
  if (!WORKER_NAME.test(o.name)) {
    throw new Error(
      `worker name ${JSON.stringify(clipCodePoints(o.name, 80))} is not valid: 1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  const validDays = o.validDays ?? DEFAULT_DEV_CERT_VALID_DAYS;
  if (!Number.isFinite(validDays) || validDays <= 0) {
    throw new Error(`issueWorkerCertificate: validDays must be a positive number, got ${validDays}`);
  }
  const now = o.now ?? new Date();
  const dir = resolve(o.dir);
  let ca: x509.X509Certificate;
  let privateKey: webcrypto.CryptoKey;
  try {
    ca = new x509.X509Certificate(readFileSync(join(dir, "ca.pem"), "utf8"));
    const der = createPrivateKey(readFileSync(join(dir, "ca-key.pem"))).export({ type: "pkcs8", format: "der" });
    privateKey = await webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
  } catch (e) {
    throw new Error(`cannot read the CA (ca.pem, ca-key.pem) in ${dir}: ${(e as Error).message}`);
  }
  const issued = await issueLeafCertificate({ cert: ca, privateKey }, `OU=worker, CN=${o.name}`, WORKER_USAGES, {
    notBefore: new Date(now.getTime() - HOUR_MS),
    notAfter: new Date(now.getTime() + validDays * DAY_MS),
  });
  const paths = { cert: join(dir, `worker-${o.name}.pem`), key: join(dir, `worker-${o.name}-key.pem`) };
  await writeFileAtomic(paths.key, privateKeyPem(issued.keys.privateKey), KEY_MODE);
  await writeFileAtomic(paths.cert, issued.cert.toString("pem"), CERT_MODE);
  return paths;
}

/** A leaf certificate and its key pair. */
type IssuedLeaf = { cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair };

/** Issues a leaf certificate signed by `ca` for a fresh ECDSA P-256 key pair. */
async function issueLeafCertificate(
  ca: { cert: x509.X509Certificate; privateKey: webcrypto.CryptoKey },
  subject: string,
  usage: x509.ExtendedKeyUsage | readonly x509.ExtendedKeyUsage[],
  validity: { notBefore: Date; notAfter: Date },
  extra: x509.Extension[] = [],
): Promise<IssuedLeaf> {
  const crypto = webcrypto;
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject,
      issuer: ca.cert.subjectName,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      publicKey: keys.publicKey,
      signingKey: ca.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(typeof usage === "string" ? [usage] : [...usage], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
        ...extra,
      ],
    },
    crypto,
  );
  return { cert, keys };
}

async function generateKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
}

/** 16 random bytes with the top bit clear and a non-zero first byte: a positive 128-bit DER INTEGER. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}

function privateKeyPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: "pkcs8", format: "pem" }) as string;
}

/** Writes via a sibling temp file created with `mode`, then renames, so no reader sees a partial file. */
async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${Buffer.from(webcrypto.getRandomValues(new Uint8Array(6))).toString("hex")}.tmp`;
  try {
    const handle = await open(tmp, "wx", mode);
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(tmp, mode); // the process umask may have narrowed `mode`
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
