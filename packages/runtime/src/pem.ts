/**
 * Checks of the PEM files every dce process is given (`--ca`, `--cert`, `--key`, the
 * coordinator's `--tls-dir`), Node.js only (re-exported by `@dce/runtime/tls`).
 *
 * Node's TLS options take PEM only, and they ignore text that is not PEM: a CA file
 * holding anything else leaves the process trusting nothing, and the failure shows up
 * later as "self-signed certificate in certificate chain". Checking at start turns
 * that into a message naming the flag and the file.
 *
 * @packageDocumentation
 */
import { createPrivateKey, X509Certificate } from "node:crypto";

/** One `-----BEGIN LABEL-----` … `-----END LABEL-----` block of a PEM file. */
interface PemBlock {
  readonly label: string;
  readonly text: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

function pemBlocks(text: string): PemBlock[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1] as string, text: m[0] }));
}

function asText(bytes: Uint8Array | string): string {
  return typeof bytes === "string" ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** Why a file without the block wanted is not usable; `what` is e.g. "CERTIFICATE". */
function missingBlock(bytes: Uint8Array | string, blocks: readonly PemBlock[], what: string): string {
  if (bytes.length === 0) return "is empty";
  // DER (binary X.509 or PKCS#8) starts with an ASN.1 SEQUENCE.
  if (typeof bytes !== "string" && bytes[0] === 0x30 && blocks.length === 0) {
    return "is DER, not PEM (convert it, e.g. openssl x509 -inform der -in FILE -out FILE.pem)";
  }
  const found = blocks.map((b) => b.label).filter((l, i, all) => all.indexOf(l) === i);
  const holds = found.length > 0 ? `; it holds ${found.map((l) => `a ${l}`).join(", ")}` : "";
  return `is not PEM: it has no -----BEGIN ${what}----- block${holds}`;
}

/**
 * The certificates in a PEM file (a CA bundle may hold several), in order.
 *
 * @returns the certificates, or `problem`: why the file is not a PEM certificate
 *   file, worded to follow its name ("is not PEM: …", "is empty").
 */
export function readPemCertificates(
  bytes: Uint8Array | string,
): { readonly certificates: readonly X509Certificate[] } | { readonly problem: string } {
  const blocks = pemBlocks(asText(bytes));
  const certs = blocks.filter((b) => b.label === "CERTIFICATE" || b.label === "TRUSTED CERTIFICATE");
  if (certs.length === 0) return { problem: missingBlock(bytes, blocks, "CERTIFICATE") };
  const certificates: X509Certificate[] = [];
  for (const [i, block] of certs.entries()) {
    try {
      certificates.push(new X509Certificate(block.text));
    } catch (e) {
      const which = certs.length === 1 ? "its certificate" : `certificate ${i + 1} of ${certs.length}`;
      return { problem: `is not a valid PEM certificate file: ${which} does not parse (${errorText(e)})` };
    }
  }
  return { certificates };
}

/**
 * Why `bytes` is not a PEM file of what `expected` names, or `undefined` when it is:
 * one or more parseable certificates, or a parseable unencrypted private key. The
 * text follows the file's name: `${flag} file ${path} ${problem}`.
 */
export function pemProblem(bytes: Uint8Array | string, expected: "certificate" | "private key"): string | undefined {
  if (expected === "certificate") {
    const read = readPemCertificates(bytes);
    return "problem" in read ? read.problem : undefined;
  }
  const blocks = pemBlocks(asText(bytes));
  const key = blocks.find((b) => b.label.endsWith("PRIVATE KEY"));
  if (key === undefined) return missingBlock(bytes, blocks, "PRIVATE KEY");
  try {
    createPrivateKey(key.text);
    return undefined;
  } catch (e) {
    return `is not a usable PEM private key: ${errorText(e)}`;
  }
}

/**
 * Why a certificate and a key do not belong together, or `undefined` when they do
 * (or when either is not PEM: {@link pemProblem} reports that).
 */
export function keyPairProblem(cert: Uint8Array | string, key: Uint8Array | string): string | undefined {
  const read = readPemCertificates(cert);
  if ("problem" in read || read.certificates[0] === undefined) return undefined;
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(typeof key === "string" ? key : Buffer.from(key));
  } catch {
    return undefined;
  }
  return read.certificates[0].checkPrivateKey(privateKey) ? undefined : "is not the private key of the certificate";
}

/** A certificate as messages show it. */
export interface CertificateSummary {
  /** Subject, RDNs joined with ", " (e.g. `OU=worker, CN=worker-1`). */
  readonly subject: string;
  /** Issuer, in the same form. */
  readonly issuer: string;
  /** Start of validity, ISO 8601. */
  readonly validFrom: string;
  /** End of validity, ISO 8601. */
  readonly validTo: string;
  /** subjectAltName entries, e.g. `DNS:localhost`, `IP Address:127.0.0.1`. */
  readonly names: readonly string[];
  /** SHA-256 fingerprint, colon-separated hex. */
  readonly fingerprint256: string;
}

/** Subject, issuer, validity, names and fingerprint of `cert`. */
export function summarizeCertificate(cert: X509Certificate): CertificateSummary {
  const dn = (s: string) => s.split("\n").filter(Boolean).join(", ");
  return {
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: new Date(cert.validTo).toISOString(),
    names: (cert.subjectAltName ?? "").split(", ").filter(Boolean),
    fingerprint256: cert.fingerprint256,
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
