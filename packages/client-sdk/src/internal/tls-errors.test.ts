import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { mapTlsError } from "./tls-errors.js";

const nodeError = (code: string, message: string): Error => Object.assign(new Error(message), { code });

describe("mapTlsError", () => {
  it.each([
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "DEPTH_ZERO_SELF_SIGNED_CERT",
    "CERT_HAS_EXPIRED",
    "ERR_TLS_CERT_ALTNAME_INVALID",
    "ERR_SSL_WRONG_VERSION_NUMBER",
  ])("turns Internal caused by %s into Unavailable, keeping the cause", (code) => {
    const cause = nodeError(code, "unable to verify the first certificate");
    const mapped = mapTlsError(new ConnectError(cause.message, Code.Internal, undefined, undefined, cause));
    expect(mapped).toBeInstanceOf(ConnectError);
    expect((mapped as ConnectError).code).toBe(Code.Unavailable);
    expect((mapped as ConnectError).rawMessage).toContain(code);
    expect((mapped as ConnectError).cause).toBe(cause);
  });

  it("finds the TLS code deeper in the cause chain", () => {
    const inner = nodeError("SELF_SIGNED_CERT_IN_CHAIN", "self-signed certificate in certificate chain");
    const outer = Object.assign(new Error("session failed"), { cause: inner });
    const mapped = mapTlsError(new ConnectError("x", Code.Internal, undefined, undefined, outer)) as ConnectError;
    expect(mapped.code).toBe(Code.Unavailable);
  });

  it("leaves other errors alone", () => {
    const notTls = new ConnectError("boom", Code.Internal, undefined, undefined, nodeError("EPIPE", "pipe"));
    expect(mapTlsError(notTls)).toBe(notTls);
    const notInternal = new ConnectError("x", Code.NotFound, undefined, undefined, nodeError("CERT_HAS_EXPIRED", "x"));
    expect(mapTlsError(notInternal)).toBe(notInternal);
    const plain = new Error("x");
    expect(mapTlsError(plain)).toBe(plain);
  });

  it("a failure of trust says to fix --ca / DCE_CA (the SDK's `ca`)", () => {
    const cause = nodeError("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "unable to verify the first certificate");
    const internal = new ConnectError(cause.message, Code.Internal, undefined, undefined, cause);
    expect((mapTlsError(internal) as ConnectError).rawMessage).toBe(
      "TLS handshake with the coordinator failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE): unable to verify the first certificate; " +
        "the coordinator's certificate is not signed by a CA this process trusts; with no --ca / DCE_CA (SDK: `ca`) only the system CAs are trusted. " +
        "To fix: give --ca / DCE_CA (SDK: `ca`) the CA that signed it, the ca.pem of the coordinator's --tls-dir",
    );
    const withCa = mapTlsError(internal, { ca: "not a certificate" }) as ConnectError;
    expect(withCa.code).toBe(Code.Unavailable);
    expect(withCa.rawMessage).toContain(
      "is not signed by the CA in --ca / DCE_CA (SDK: `ca`). To fix: give --ca / DCE_CA (SDK: `ca`) the CA",
    );
  });

  it("other TLS failures keep the plain message", () => {
    const cause = nodeError("ERR_SSL_WRONG_VERSION_NUMBER", "wrong version number");
    const mapped = mapTlsError(new ConnectError(cause.message, Code.Internal, undefined, undefined, cause)) as ConnectError;
    expect(mapped.rawMessage).toBe(
      "TLS handshake with the coordinator failed (ERR_SSL_WRONG_VERSION_NUMBER): wrong version number",
    );
  });
});
