import { X509Certificate } from "node:crypto";
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caA, caB, expiredCa, expiredLeafA, leafOfExpiredCa, serverA, serverKeyA } from "./test-support/tls-fixtures.js";
import {
  explainTlsFailure,
  fetchPeerCertificate,
  isTlsMisconfiguration,
  type TlsFailure,
  type TlsFailureContext,
  tlsFailureIn,
} from "./tls.js";

const nodeError = (code: string, extra: object = {}): Error => Object.assign(new Error(`${code} happened`), { code, ...extra });
const wrapped = (cause: unknown): Error => Object.assign(new Error("[internal] call failed"), { cause });

describe("tlsFailureIn", () => {
  it.each([
    ["SELF_SIGNED_CERT_IN_CHAIN", "untrusted"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "untrusted"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "untrusted"],
    ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "untrusted"],
    ["CERT_HAS_EXPIRED", "expired"],
    ["CERT_NOT_YET_VALID", "expired"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "hostname"],
    ["ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "client-certificate-refused"],
    ["ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "client-certificate-refused"],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "client-certificate-refused"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "other"],
    ["EPROTO", "other"],
  ])("classifies %s as %s, however deep in the cause chain", (code, kind) => {
    expect(tlsFailureIn(nodeError(code))).toMatchObject({ kind, code, message: `${code} happened` });
    expect(tlsFailureIn(wrapped(wrapped(nodeError(code))))?.kind).toBe(kind);
    expect(isTlsMisconfiguration(wrapped(nodeError(code)))).toBe(kind !== "other");
  });

  it("finds nothing in network errors, plain errors or a cycle", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ERR_HTTP2_STREAM_ERROR"]) {
      expect(tlsFailureIn(wrapped(nodeError(code)))).toBeUndefined();
      expect(isTlsMisconfiguration(wrapped(nodeError(code)))).toBe(false);
    }
    const a: { cause?: unknown } = {};
    a.cause = { cause: a };
    expect(tlsFailureIn(a)).toBeUndefined();
    expect(tlsFailureIn("x")).toBeUndefined();
  });

  it("keeps the certificate and host of a host name mismatch", () => {
    const cert = { raw: new X509Certificate(serverA).raw };
    const f = tlsFailureIn(wrapped(nodeError("ERR_TLS_CERT_ALTNAME_INVALID", { cert, host: "example.com" })));
    expect(f?.host).toBe("example.com");
    expect(f?.peer?.subject).toBe("CN=dce-coordinator");
  });
});

describe("explainTlsFailure", () => {
  const ctx: TlsFailureContext = { caOption: "--ca / DCE_CA", urlOption: "--coordinator / DCE_COORDINATOR" };
  const caFile = (path: string, ...pems: string[]) => ({ path, certificates: pems.map((p) => new X509Certificate(p)) });
  const failure = (kind: TlsFailure["kind"], code: string): TlsFailure => ({ kind, code, message: code });

  it("untrusted: names the coordinator's subject and issuer, the CA file, and --ca", () => {
    const text = explainTlsFailure(failure("untrusted", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"), {
      ...ctx,
      caFile: caFile("certs/ca.pem", caB),
      peer: new X509Certificate(serverA),
    });
    expect(text).toMatch(
      /^the coordinator's certificate \(subject "CN=dce-coordinator", issuer "CN=dce dev CA"\) is not signed by the CA in --ca \/ DCE_CA; certs\/ca\.pem holds "CN=dce dev CA" with SHA-256 fingerprint [0-9A-F:]{23}…/,
    );
    // Same name, other key: the CA was made again.
    expect(text).toContain("the CA was probably made again (coordinator init-certs)");
    expect(text).toMatch(/\. To fix: give --ca \/ DCE_CA the CA that signed it, the ca\.pem of the coordinator's --tls-dir$/);
    // Not said when the CA in the file has another name.
    const unrelated = explainTlsFailure(failure("untrusted", "SELF_SIGNED_CERT_IN_CHAIN"), {
      ...ctx,
      caFile: caFile("ca.pem", leafOfExpiredCa),
      peer: new X509Certificate(serverA),
    });
    expect(unrelated).toMatch(/ca\.pem holds "OU=worker, CN=young" with SHA-256 fingerprint [0-9A-F:]{23}…\. To fix:/);
  });

  it("untrusted without a CA file: says only the system CAs were used", () => {
    const text = explainTlsFailure(failure("untrusted", "SELF_SIGNED_CERT_IN_CHAIN"), ctx);
    expect(text).toBe(
      "the coordinator's certificate is not signed by a CA this process trusts; with no --ca / DCE_CA only the system CAs are trusted. To fix: give --ca / DCE_CA the CA that signed it, the ca.pem of the coordinator's --tls-dir",
    );
  });

  it("expired: the coordinator's certificate, or the CA in --ca when that is the one out of date", () => {
    const now = new Date("2030-01-01T00:00:00Z");
    const theirs = explainTlsFailure(failure("expired", "CERT_HAS_EXPIRED"), {
      ...ctx,
      caFile: caFile("ca.pem", caA),
      peer: new X509Certificate(expiredLeafA),
      now,
    });
    expect(theirs).toMatch(
      /^the coordinator's certificate \(subject "OU=worker, CN=old", .*\) is not valid now \(valid 2024-12-31T23:00:00\.000Z to 2025-01-02T00:00:00\.000Z\)\. To fix: issue the coordinator a new certificate/,
    );
    const ours = explainTlsFailure(failure("expired", "CERT_HAS_EXPIRED"), {
      ...ctx,
      caFile: caFile("old-ca.pem", expiredCa),
      peer: new X509Certificate(leafOfExpiredCa),
      now,
    });
    expect(ours).toMatch(
      /^the CA "CN=dce dev CA" in --ca \/ DCE_CA \(old-ca\.pem\) is not valid now \(valid .* to 2025-01-02T.*\)\. To fix: give --ca/,
    );
  });

  it("hostname: names the host, the names the certificate lists, and the URL option", () => {
    const cert = { raw: new X509Certificate(serverA).raw };
    const f = tlsFailureIn(nodeError("ERR_TLS_CERT_ALTNAME_INVALID", { cert, host: "coord.example" })) as TlsFailure;
    expect(explainTlsFailure(f, ctx)).toMatch(
      /is not valid for "coord\.example" \(it lists DNS:localhost, IP Address:127\.0\.0\.1\); the CA in --ca \/ DCE_CA did verify it\. To fix: give --coordinator \/ DCE_COORDINATOR a host the certificate lists/,
    );
  });

  it("client certificate refused: names the certificate options", () => {
    const text = explainTlsFailure(failure("client-certificate-refused", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"), {
      ...ctx,
      certOption: "--cert / --key",
    });
    expect(text).toContain(
      "refused this process's client certificate in the TLS handshake (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA). To fix: give --cert / --key a certificate",
    );
  });
});

describe("against a real TLS server on loopback", () => {
  let server: tls.Server;
  let url: string;
  beforeAll(async () => {
    server = tls.createServer({ cert: serverA, key: serverKeyA, ALPNProtocols: ["h2"] }, (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const handshake = (options: tls.ConnectionOptions): Promise<unknown> =>
    new Promise((resolve) => {
      const port = (server.address() as AddressInfo).port;
      const socket = tls.connect({ host: "127.0.0.1", port, ...options });
      socket.once("secureConnect", () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.once("error", resolve);
    });

  it("Node's errors for another CA and for another host name are classified", async () => {
    expect(tlsFailureIn(await handshake({ ca: caB }))?.kind).toBe("untrusted");
    const mismatch = tlsFailureIn(await handshake({ ca: caA, servername: "coord.example" }));
    expect(mismatch).toMatchObject({ kind: "hostname", code: "ERR_TLS_CERT_ALTNAME_INVALID", host: "coord.example" });
    expect(mismatch?.peer?.subject).toBe("CN=dce-coordinator");
    expect(await handshake({ ca: caA })).toBeUndefined();
  });

  it("fetchPeerCertificate returns the server's certificate, or undefined when nothing answers", async () => {
    expect((await fetchPeerCertificate(url, 5_000))?.fingerprint256).toBe(new X509Certificate(serverA).fingerprint256);
    const closed = tls.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(await fetchPeerCertificate(`https://127.0.0.1:${port}`, 5_000)).toBeUndefined();
  });
});
