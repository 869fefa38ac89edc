/**
 * TLS misconfiguration, shared by the worker and the SDK (`@dce/runtime/tls`, Node.js only):
 * which TLS failures are a matter of trust (retrying cannot fix them), what the peer's
 * certificate was, and a message saying which option to fix. Also the PEM checks of
 * `pem.ts`, which every bin runs at start.
 *
 * @packageDocumentation
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect } from "node:tls";
import { summarizeCertificate } from "./pem.js";

export {
  type CertificateSummary,
  keyPairProblem,
  pemProblem,
  readPemCertificates,
  summarizeCertificate,
} from "./pem.js";

/**
 * What went wrong in a TLS handshake:
 * - `untrusted`: the peer's certificate does not chain to a CA this side trusts;
 * - `expired`: a certificate of the chain is past (or before) its validity;
 * - `hostname`: the chain is trusted, but the certificate does not name the host dialled;
 * - `client-certificate-refused`: the peer refused this side's certificate (a TLS alert);
 * - `other`: any other TLS failure (protocol or version mismatch, a reset handshake…).
 *
 * Every kind but `other` is a misconfiguration: trying again gives the same answer.
 */
export type TlsFailureKind = "untrusted" | "expired" | "hostname" | "client-certificate-refused" | "other";

/** A TLS failure found in an error's cause chain by {@link tlsFailureIn}. */
export interface TlsFailure {
  readonly kind: TlsFailureKind;
  /** Node's or OpenSSL's code, e.g. `SELF_SIGNED_CERT_IN_CHAIN`. */
  readonly code: string;
  /** The message of the error carrying `code`. */
  readonly message: string;
  /** The peer's certificate, when the error carries it (`ERR_TLS_CERT_ALTNAME_INVALID` does). */
  readonly peer?: X509Certificate;
  /** The host name the certificate was checked against, when the error says. */
  readonly host?: string;
}

// OpenSSL X509 verify results (X509_V_ERR_* without the prefix), which Node uses as codes.
const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "PATH_LENGTH_EXCEEDED",
  "CERT_CHAIN_TOO_LONG",
]);
const EXPIRED = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);
const HOSTNAME = new Set(["ERR_TLS_CERT_ALTNAME_INVALID", "HOSTNAME_MISMATCH"]);
// Alerts the server sends when it refuses the client's certificate.
const CLIENT_REFUSED =
  /^ERR_SSL_(SSLV3_ALERT_BAD_CERTIFICATE|SSLV3_ALERT_CERTIFICATE_(EXPIRED|REVOKED|UNKNOWN)|SSLV3_ALERT_UNSUPPORTED_CERTIFICATE|TLSV1_ALERT_UNKNOWN_CA|TLSV13_ALERT_CERTIFICATE_REQUIRED)$/;
// Anything else TLS-ish, as the SDK has long matched it.
const OTHER_TLS = /^(ERR_TLS_|ERR_SSL_|EPROTO$)|CERT|SELF_SIGNED|UNABLE_TO_/;

function kindOf(code: string): TlsFailureKind | undefined {
  if (UNTRUSTED.has(code)) return "untrusted";
  if (EXPIRED.has(code)) return "expired";
  if (HOSTNAME.has(code)) return "hostname";
  if (CLIENT_REFUSED.test(code)) return "client-certificate-refused";
  return OTHER_TLS.test(code) ? "other" : undefined;
}

/**
 * The TLS failure behind `e`: the first error in its `cause` chain whose `code` is a
 * TLS or certificate code, classified; `undefined` when there is none.
 */
export function tlsFailureIn(e: unknown): TlsFailure | undefined {
  const seen = new Set<unknown>();
  for (let current = e; typeof current === "object" && current !== null && !seen.has(current); ) {
    seen.add(current);
    const code: unknown = Reflect.get(current, "code");
    const kind = typeof code === "string" ? kindOf(code) : undefined;
    if (kind !== undefined && typeof code === "string") {
      const message: unknown = Reflect.get(current, "message");
      const peer = peerOf(Reflect.get(current, "cert"));
      const host: unknown = Reflect.get(current, "host");
      return {
        kind,
        code,
        message: typeof message === "string" ? message : code,
        ...(peer === undefined ? {} : { peer }),
        ...(typeof host === "string" ? { host } : {}),
      };
    }
    current = Reflect.get(current, "cause");
  }
  return undefined;
}

/** True when `e` was caused by a TLS failure that trying again cannot fix (every kind but `other`). */
export function isTlsMisconfiguration(e: unknown): boolean {
  const failure = tlsFailureIn(e);
  return failure !== undefined && failure.kind !== "other";
}

function peerOf(cert: unknown): X509Certificate | undefined {
  const raw: unknown = typeof cert === "object" && cert !== null ? Reflect.get(cert, "raw") : undefined;
  if (!(raw instanceof Uint8Array)) return undefined;
  try {
    return new X509Certificate(raw);
  } catch {
    return undefined;
  }
}

/**
 * The certificate the server at `url` presents, for diagnosis only: one TLS handshake
 * that checks nothing (`rejectUnauthorized: false`), presents no client certificate
 * and sends no data, then closes.
 *
 * @returns the certificate, or `undefined` if there is none within `timeoutMs` (the
 *   server is unreachable, not TLS, or slow).
 */
export function fetchPeerCertificate(url: string, timeoutMs: number): Promise<X509Certificate | undefined> {
  const { hostname, port } = new URL(url);
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  return new Promise((resolve) => {
    const socket = connect({
      host,
      port: Number(port || 443),
      // SNI takes names only; Node warns when given an IP address.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
    });
    const done = (cert: X509Certificate | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(cert);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once("secureConnect", () => done(peerOf(socket.getPeerCertificate())));
    socket.once("error", () => done(undefined));
  });
}

/** What {@link explainTlsFailure} knows besides the failure. */
export interface TlsFailureContext {
  /** How the user gives the CA, e.g. "--ca / DCE_CA". */
  readonly caOption: string;
  /** How the user gives the coordinator's URL, e.g. "--coordinator / DCE_COORDINATOR". */
  readonly urlOption: string;
  /** How the user gives a client certificate, e.g. "--cert / --key (DCE_WORKER_CERT / DCE_WORKER_KEY)". */
  readonly certOption?: string;
  /** The CA given (its file, if known, and its certificates); absent when the system CAs are used. */
  readonly caFile?: { readonly path?: string; readonly certificates: readonly X509Certificate[] };
  /** The coordinator's certificate, e.g. from {@link fetchPeerCertificate}; `failure.peer` wins. */
  readonly peer?: X509Certificate;
  /** The time to check validity against; default now. */
  readonly now?: Date;
}

/**
 * One line saying what is wrong and which option fixes it, for a failure of any kind
 * but `other`. It names the coordinator's certificate (subject and issuer) when known,
 * and the CA file's certificates when they explain the failure.
 */
export function explainTlsFailure(failure: TlsFailure, ctx: TlsFailureContext): string {
  const peer = failure.peer ?? ctx.peer;
  const seen = peer === undefined ? undefined : summarizeCertificate(peer);
  const theirs = `the coordinator's certificate${seen === undefined ? "" : ` (subject "${seen.subject}", issuer "${seen.issuer}")`}`;
  const ca = ctx.caFile;
  const caNames = ca?.certificates.map((c) => summarizeCertificate(c)) ?? [];
  const caList = caNames.map((c) => `"${c.subject}" with SHA-256 fingerprint ${c.fingerprint256.slice(0, 23)}…`).join(" and ");
  switch (failure.kind) {
    case "untrusted": {
      const fix = `give ${ctx.caOption} the CA that signed it, the ca.pem of the coordinator's --tls-dir`;
      if (ca === undefined) {
        return `${theirs} is not signed by a CA this process trusts; with no ${ctx.caOption} only the system CAs are trusted. To fix: ${fix}`;
      }
      const holds = caNames.length === 0 ? "" : `; ${ca.path ?? "it"} holds ${caList}`;
      // Every dev CA is "CN=dce dev CA": the same name with another key is a CA made again.
      const namesake = peer !== undefined && ca.certificates.some((c) => c.subject === peer.issuer && !peer.verify(c.publicKey));
      const again = namesake
        ? ", the issuer's name but another key: the CA was probably made again (coordinator init-certs) after this file was copied"
        : "";
      return `${theirs} is not signed by the CA in ${ctx.caOption}${holds}${again}. To fix: ${fix}`;
    }
    case "expired": {
      const now = (ctx.now ?? new Date()).getTime();
      const expiredCa = ca?.certificates.find((c) => !withinValidity(c, now));
      if (expiredCa !== undefined && (peer === undefined || withinValidity(peer, now))) {
        const c = summarizeCertificate(expiredCa);
        const where = ca?.path === undefined ? "" : ` (${ca.path})`;
        return `the CA "${c.subject}" in ${ctx.caOption}${where} is not valid now (valid ${c.validFrom} to ${c.validTo}). To fix: give ${ctx.caOption} a current CA, and the coordinator a certificate it signed`;
      }
      const when = seen === undefined ? "" : ` (valid ${seen.validFrom} to ${seen.validTo})`;
      return `${theirs} is not valid now${when}. To fix: issue the coordinator a new certificate (coordinator init-certs, or your PKI) and restart it; if the CA in ${ctx.caOption} is the one out of date, replace that too`;
    }
    case "hostname": {
      const host = failure.host === undefined ? "the host name in the URL" : `"${failure.host}"`;
      const names = seen === undefined || seen.names.length === 0 ? "" : ` (it lists ${seen.names.join(", ")})`;
      return `${theirs} is not valid for ${host}${names}; the CA in ${ctx.caOption} did verify it. To fix: give ${ctx.urlOption} a host the certificate lists, or issue the coordinator a certificate for this name (coordinator init-certs --hosts)`;
    }
    case "client-certificate-refused": {
      const option = ctx.certOption ?? "the client certificate";
      return `the coordinator refused this process's client certificate in the TLS handshake (${failure.code}). To fix: give ${option} a certificate signed by the CA in the coordinator's --tls-dir`;
    }
    case "other":
      return `TLS handshake with the coordinator failed (${failure.code}): ${failure.message}`;
  }
}

function withinValidity(cert: X509Certificate, nowMs: number): boolean {
  return new Date(cert.validFrom).getTime() <= nowMs && nowMs <= new Date(cert.validTo).getTime();
}
