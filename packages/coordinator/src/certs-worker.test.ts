import "reflect-metadata";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExistingCaError, generateDevCertificates, issueWorkerCertificate } from "./certs.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("issueWorkerCertificate", () => {
  it("issues OU=worker, CN=<name> from the existing CA, for client and server authentication", async () => {
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
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"]); // clientAuth, serverAuth (peers read its panels)
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

describe("generateDevCertificates over an existing CA", () => {
  it("refuses to replace it without replaceCa, writing nothing; replaces it with replaceCa and says so", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-certs-"));
    dirs.push(dir);
    const first = await generateDevCertificates({ outDir: dir, workers: 1 });
    expect(first.replacedCa).toBe(false);
    const before = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
    const refused = await generateDevCertificates({ outDir: dir, workers: 3 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ExistingCaError);
    expect((refused as ExistingCaError).caCert).toBe(join(dir, "ca.pem"));
    // Nothing written: not the CA, not a leaf, not worker-3.
    expect(Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]))).toEqual(before);

    // The kept CA still issues workers (init-certs --worker NAME).
    const more = await issueWorkerCertificate({ dir, name: "more" });
    const ca = new X509Certificate(readFileSync(first.caCert));
    expect(new X509Certificate(readFileSync(more.cert)).verify(ca.publicKey)).toBe(true);

    const second = await generateDevCertificates({ outDir: dir, workers: 1, replaceCa: true });
    expect(second.replacedCa).toBe(true);
    const server = new X509Certificate(readFileSync(second.serverCert));
    expect(server.verify(ca.publicKey)).toBe(false);
    expect(server.verify(new X509Certificate(readFileSync(second.caCert)).publicKey)).toBe(true);
  });

  it("counts a lone ca-key.pem as a CA too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-certs-"));
    dirs.push(dir);
    await generateDevCertificates({ outDir: dir, workers: 0 });
    rmSync(join(dir, "ca.pem"));
    await expect(generateDevCertificates({ outDir: dir })).rejects.toBeInstanceOf(ExistingCaError);
  });
});
