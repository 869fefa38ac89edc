import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { explainCredentialFailure, tlsFileProblems } from "./credentials.js";

const file = (path: string, text: string | number[]) => ({
  path,
  bytes: typeof text === "string" ? new TextEncoder().encode(text) : Uint8Array.from(text),
});
const coordinatorUrl = "https://coord.test:7070";
const tlsError = (code: string): Error =>
  new Error("AcquireShards failed", {
    cause: new ConnectError(code, Code.Internal, undefined, undefined, Object.assign(new Error(code), { code })),
  });

describe("tlsFileProblems", () => {
  it("names the flag and the file of each file that is not PEM", () => {
    expect(
      tlsFileProblems({
        ca: file("ca.txt", "hello"),
        cert: file("cert.der", [0x30, 0x82, 0x01, 0x0a]),
        key: file("key.pem", ""),
      }),
    ).toEqual([
      "--ca / DCE_CA file ca.txt is not PEM: it has no -----BEGIN CERTIFICATE----- block",
      "--cert file cert.der is DER, not PEM (convert it, e.g. openssl x509 -inform der -in FILE -out FILE.pem)",
      "--key file key.pem is empty",
    ]);
  });

  it("has nothing to say about files that were not given", () => {
    expect(tlsFileProblems({})).toEqual([]);
  });
});

describe("explainCredentialFailure", () => {
  it("a client certificate refused in the handshake names --cert / --key, without fetching anything", async () => {
    const line = await explainCredentialFailure(tlsError("ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"), { coordinatorUrl, files: {} });
    expect(line?.message).toBe(
      "giving up: the coordinator refused this process's client certificate in the TLS handshake (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA). " +
        "To fix: give --cert / --key (DCE_WORKER_CERT / DCE_WORKER_KEY) a certificate signed by the CA in the coordinator's --tls-dir",
    );
    expect(line?.fields).toMatchObject({ code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", coordinator: coordinatorUrl });
  });

  it("UNAUTHENTICATED without a certificate says to pass --cert / --key", async () => {
    const refused = new ConnectError("it takes a client certificate", Code.Unauthenticated);
    const line = await explainCredentialFailure(refused, { coordinatorUrl, files: {} });
    expect(line?.message).toMatch(
      /^giving up: the coordinator at https:\/\/coord\.test:7070 requires a client certificate and this worker presented none\. To fix: give --cert \/ --key \(DCE_WORKER_CERT \/ DCE_WORKER_KEY\) a certificate signed by the CA in the coordinator's --tls-dir, with OU=worker/,
    );
    expect(line?.fields).toMatchObject({ code: "Unauthenticated", err: "[unauthenticated] it takes a client certificate" });
  });

  it("leaves everything else to the caller", async () => {
    for (const e of [
      new ConnectError("no", Code.PermissionDenied),
      new ConnectError(
        "refused",
        Code.Unavailable,
        undefined,
        undefined,
        Object.assign(new Error("x"), { code: "ECONNREFUSED" }),
      ),
      tlsError("ERR_SSL_WRONG_VERSION_NUMBER"),
      new Error("boom"),
    ]) {
      expect(await explainCredentialFailure(e, { coordinatorUrl, files: {} })).toBeUndefined();
    }
  });
});
