import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateDevCertificates } from "@dce/coordinator";
import { beforeAll, describe, expect, it } from "vitest";
import { createClient } from "./client.js";

// A development CA, made as `coordinator init-certs` makes one.
let caPem = "";
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "dce-client-ca-"));
  try {
    caPem = readFileSync((await generateDevCertificates({ outDir: dir })).caCert, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

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
