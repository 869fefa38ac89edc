import "reflect-metadata";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateDevCertificates, issueWorkerCertificate } from "./certs.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("issueWorkerCertificate", () => {
  it("issues OU=worker, CN=<name> from the existing CA, for client authentication", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-certs-"));
    dirs.push(dir);
    const dev = await generateDevCertificates({ outDir: dir });
    const now = new Date("2031-05-06T07:08:09Z");
    const paths = await issueWorkerCertificate({ dir, name: "gpu-3", validDays: 2, now });
    expect(paths).toEqual({ cert: join(dir, "worker-gpu-3.pem"), key: join(dir, "worker-gpu-3-key.pem") });
    const cert = new X509Certificate(readFileSync(paths.cert));
    const ca = new X509Certificate(readFileSync(dev.caCert));
    expect(cert.subject.split("\n").sort()).toEqual(["CN=gpu-3", "OU=worker"]);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]); // clientAuth
    expect(cert.ca).toBe(false);
    expect(new Date(cert.validFrom).getTime()).toBe(now.getTime() - 3_600_000);
    expect(new Date(cert.validTo).getTime()).toBe(now.getTime() + 2 * 86_400_000);
    expect(cert.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))).toBe(true);
    expect(statSync(paths.key).mode & 0o777).toBe(0o600);
  });

  it("refuses names that are not plain identifiers, and a folder without a CA", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-certs-"));
    dirs.push(dir);
    for (const name of ["", "../x", "a/b", "CN=x", "x".repeat(65)]) {
      await expect(issueWorkerCertificate({ dir, name })).rejects.toThrow("is not valid");
    }
    await expect(issueWorkerCertificate({ dir, name: "w1" })).rejects.toThrow("cannot read the CA");
  });
});
