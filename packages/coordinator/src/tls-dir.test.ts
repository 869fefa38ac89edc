import "reflect-metadata";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateDevCertificates } from "./certs.js";
import { loadServerTls } from "./tls-dir.js";

let root: string;
let dir: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "dce-tls-dir-"));
  dir = join(root, "certs");
  await generateDevCertificates({ outDir: dir, workers: 1 });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A copy of the good folder with `changes` applied (file name → new content, or a file to copy). */
function variant(name: string, changes: Record<string, string | { copyOf: string }>): string {
  const out = join(root, name);
  mkdirSync(out);
  for (const file of ["server.pem", "server-key.pem", "ca.pem"]) {
    const change = changes[file];
    if (change === undefined) copyFileSync(join(dir, file), join(out, file));
    else if (typeof change === "string") writeFileSync(join(out, file), change);
    else copyFileSync(join(dir, change.copyOf), join(out, file));
  }
  return out;
}

describe("loadServerTls", () => {
  it("loads the server's certificate and key, and the CA when client certificates are checked", () => {
    const tls = loadServerTls(dir, true);
    expect(tls.cert.toString()).toContain("BEGIN CERTIFICATE");
    expect(tls.key.toString()).toContain("PRIVATE KEY");
    expect(tls.ca?.toString()).toContain("BEGIN CERTIFICATE");
    expect(loadServerTls(dir, false).ca).toBeUndefined();
  });

  it("refuses a ca.pem that is not PEM, naming --tls-dir and the file", () => {
    const bad = variant("text-ca", { "ca.pem": "not a certificate\n" });
    expect(() => loadServerTls(bad, true)).toThrow(
      `--tls-dir file ${join(bad, "ca.pem")} is not PEM: it has no -----BEGIN CERTIFICATE----- block`,
    );
    // Without authentication ca.pem is not used, so not checked.
    expect(() => loadServerTls(bad, false)).not.toThrow();
  });

  it("refuses a server key that is not the certificate's, or a key where the certificate should be", () => {
    const otherKey = variant("other-key", { "server-key.pem": { copyOf: "worker-1-key.pem" } });
    expect(() => loadServerTls(otherKey, true)).toThrow(
      `--tls-dir file ${join(otherKey, "server-key.pem")} is not the private key of the certificate in server.pem`,
    );
    const swapped = variant("swapped", { "server.pem": { copyOf: "server-key.pem" } });
    expect(() => loadServerTls(swapped, true)).toThrow(
      /server\.pem is not PEM: it has no -----BEGIN CERTIFICATE----- block; it holds a PRIVATE KEY/,
    );
  });

  it("names the folder when a file is missing", () => {
    expect(() => loadServerTls(join(root, "nowhere"), true)).toThrow(
      `cannot read server.pem / server-key.pem in ${join(root, "nowhere")}`,
    );
  });
});
