import { describe, expect, it } from "vitest";
import { createClient } from "./client.js";

// A development CA made by `coordinator init-certs`'s generator (ECDSA P-256, valid to 2124).
const caPem = `-----BEGIN CERTIFICATE-----
MIIBbTCCARKgAwIBAgIQQX5q6PE8AibwQVNGpNvA4DAKBggqhkjOPQQDAjAVMRMw
EQYDVQQDEwpkY2UgZGV2IENBMCAXDTI0MTIzMTIzMDAwMFoYDzIxMjQxMjA4MDAw
MDAwWjAVMRMwEQYDVQQDEwpkY2UgZGV2IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEeSt0SSiM/MKvGRqtWwK/frdogElIhwHRxK4KF2Zegy5oItGfVB+MwGo6
Gqz3S4SkSoSByvZUM/gkQyTdPiGKsKNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNV
HQ8BAf8EBAMCAQYwHQYDVR0OBBYEFD1DmD+1qRN6BqNTELDS/0tT2OSQMAoGCCqG
SM49BAMCA0kAMEYCIQCHiimWudxiMyEYfraLVOpOLJLosMheYWD2Jdkw701bjAIh
AIP7FWIMWDzne+RqTfWBur5XKS6lEq0rtRjnsvbHn67i
-----END CERTIFICATE-----
`;

describe("createClient's ca", () => {
  it("takes PEM certificates, as text or bytes, without connecting", () => {
    expect(() => createClient({ baseUrl: "https://127.0.0.1:1", ca: caPem })).not.toThrow();
    expect(() => createClient({ baseUrl: "https://127.0.0.1:1", ca: new TextEncoder().encode(caPem) })).not.toThrow();
  });

  // Node would ignore it, trust nothing, and fail every call later with "self-signed
  // certificate in certificate chain", blaming a CA that was never read.
  it.each([
    ["text that is not PEM", "not a certificate", "ca is not PEM: it has no -----BEGIN CERTIFICATE----- block"],
    ["an empty file", "", "ca is empty"],
    ["DER bytes", Uint8Array.of(0x30, 0x82, 0x01, 0x6d), "ca is DER, not PEM"],
    ["a private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "it holds a PRIVATE KEY"],
  ])("refuses %s at once with a TypeError saying why", (_what, ca, message) => {
    expect(() => createClient({ baseUrl: "https://127.0.0.1:1", ca })).toThrow(TypeError);
    expect(() => createClient({ baseUrl: "https://127.0.0.1:1", ca })).toThrow(message);
  });
});
