import "reflect-metadata";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevCertificatePaths, generateDevCertificates } from "./certs.js";

// The files and certificates generateDevCertificates writes (handshakes using them: certs-tls.test.ts).

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

let root: string;
let paths: DevCertificatePaths;
/** A second, unrelated dev PKI: its CA must not validate anything from `paths`. */
let other: DevCertificatePaths;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dce-certs-test-"));
  // Nested, not-yet-existing directory: generation must create it.
  paths = await generateDevCertificates({
    outDir: join(root, "main", "certs"),
  });
  other = await generateDevCertificates({ outDir: join(root, "other") });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

async function cert(path: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(path));
}

async function peculiar(path: string): Promise<x509.X509Certificate> {
  return new x509.X509Certificate(await readFile(path, "utf8"));
}

describe("generateDevCertificates: files", () => {
  it("returns absolute paths of every file it writes", async () => {
    const files = [
      paths.caCert,
      paths.caKey,
      paths.serverCert,
      paths.serverKey,
      ...paths.workers.flatMap((w) => [w.cert, w.key]),
      paths.clientCert,
      paths.clientKey,
    ];
    expect(isAbsolute(paths.dir)).toBe(true);
    expect(files.map((f) => f.slice(paths.dir.length + 1)).sort()).toEqual(
      [
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "worker-1.pem",
        "worker-1-key.pem",
        "worker-2.pem",
        "worker-2-key.pem",
        "client.pem",
        "client-key.pem",
      ].sort(),
    );
    for (const f of files) {
      expect(isAbsolute(f)).toBe(true);
      expect((await stat(f)).isFile()).toBe(true);
    }
  });

  it("writes keys as PKCS#8 EC P-256 PEM with mode 0600 and certificates with mode 0644", async () => {
    for (const key of [paths.caKey, paths.serverKey, ...paths.workers.map((w) => w.key), paths.clientKey]) {
      const pem = await readFile(key, "utf8");
      expect(pem.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
      const k = createPrivateKey(pem);
      expect(k.asymmetricKeyType).toBe("ec");
      expect(k.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      if (process.platform !== "win32") expect((await stat(key)).mode & 0o777).toBe(0o600);
    }
    for (const c of [paths.caCert, paths.serverCert, ...paths.workers.map((w) => w.cert), paths.clientCert]) {
      expect((await readFile(c, "utf8")).startsWith("-----BEGIN CERTIFICATE-----")).toBe(true);
      if (process.platform !== "win32") expect((await stat(c)).mode & 0o777).toBe(0o644);
    }
  });

  it("rejects invalid options", async () => {
    const outDir = join(root, "invalid");
    await expect(generateDevCertificates({ outDir, hosts: [] })).rejects.toThrow(/hosts/);
    await expect(generateDevCertificates({ outDir, validDays: 0 })).rejects.toThrow(/validDays/);
    await expect(generateDevCertificates({ outDir, validDays: Number.NaN })).rejects.toThrow(/validDays/);
    for (const workers of [-1, 1.5, 1001]) {
      await expect(generateDevCertificates({ outDir, workers })).rejects.toThrow(/workers must be an integer from 0 to 1000/);
    }
  });

  it("writes one certificate per worker, each with its own identity and key", async () => {
    const dir = join(root, "four");
    const four = await generateDevCertificates({ outDir: dir, workers: 4 });
    expect(four.workers.map((w) => [w.identity, w.cert.slice(dir.length + 1), w.key.slice(dir.length + 1)])).toEqual(
      [1, 2, 3, 4].map((i) => [`worker-${i}`, `worker-${i}.pem`, `worker-${i}-key.pem`]),
    );
    const certs = await Promise.all(four.workers.map((w) => cert(w.cert)));
    expect(certs.map((c) => c.subject.split("\n").sort())).toEqual([1, 2, 3, 4].map((i) => [`CN=worker-${i}`, "OU=worker"]));
    expect(new Set(certs.map((c) => c.publicKey.export({ type: "spki", format: "pem" }))).size).toBe(4);
    const none = await generateDevCertificates({ outDir: join(root, "none"), workers: 0 });
    expect(none.workers).toEqual([]);
  });
});

describe("generateDevCertificates: certificate contents", () => {
  it("produces a self-signed CA with critical basicConstraints CA:true and keyCertSign+cRLSign", async () => {
    const ca = await cert(paths.caCert);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toBe("CN=dce dev CA");
    expect(ca.issuer).toBe("CN=dce dev CA");
    expect(ca.checkIssued(ca)).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(ca.checkPrivateKey(createPrivateKey(await readFile(paths.caKey)))).toBe(true);

    const p = await peculiar(paths.caCert);
    const bc = p.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(true);
    expect(bc?.critical).toBe(true);
    const ku = p.getExtension(x509.KeyUsagesExtension);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(p.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);
  });

  it("issues a server certificate from the CA that is valid for localhost, 127.0.0.1 and ::1", async () => {
    const ca = await cert(paths.caCert);
    const server = await cert(paths.serverCert);
    expect(server.ca).toBe(false);
    expect(server.subject).toBe("CN=dce-coordinator");
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkHost("localhost")).toBe("localhost");
    expect(server.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(server.checkIP("::1")).toBe("::1");
    expect(server.checkHost("example.com")).toBeUndefined();
    expect(server.checkIP("10.0.0.1")).toBeUndefined();
    expect(server.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    // Node's (misnamed) keyUsage getter lists the extended key usages.
    expect(server.keyUsage).toEqual([SERVER_AUTH]);
    expect(server.checkPrivateKey(createPrivateKey(await readFile(paths.serverKey)))).toBe(true);

    const p = await peculiar(paths.serverCert);
    expect(p.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    const caSki = (await peculiar(paths.caCert)).getExtension(x509.SubjectKeyIdentifierExtension);
    expect(p.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(caSki?.keyId);
    expect(p.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
  });

  it("issues worker (clientAuth + serverAuth) and client (clientAuth) certificates with role OUs", async () => {
    const ca = await cert(paths.caCert);
    const worker = await cert(paths.workers[0]?.cert ?? "");
    const client = await cert(paths.clientCert);
    for (const [c, name, cn] of [
      [worker, "worker", "worker-1"],
      [client, "client", "dce-client"],
    ] as const) {
      expect(c.ca).toBe(false);
      expect(c.checkIssued(ca)).toBe(true);
      expect(c.verify(ca.publicKey)).toBe(true);
      expect(c.subject.split("\n").sort()).toEqual([`CN=${cn}`, `OU=${name}`]);
      // A worker also serves panels to its peers (--peer-listen): serverAuth too.
      expect(c.keyUsage).toEqual(name === "worker" ? [CLIENT_AUTH, "1.3.6.1.5.5.7.3.1"] : [CLIENT_AUTH]);
      expect(c.subjectAltName).toBeUndefined();
    }
    expect(worker.checkPrivateKey(createPrivateKey(await readFile(paths.workers[0]?.key ?? "")))).toBe(true);
    expect(client.checkPrivateKey(createPrivateKey(await readFile(paths.clientKey)))).toBe(true);
    // Keys are distinct per role.
    expect(worker.checkPrivateKey(createPrivateKey(await readFile(paths.clientKey)))).toBe(false);
  });

  it("is not trusted by an unrelated dev CA", async () => {
    const otherCa = await cert(other.caCert);
    const server = await cert(paths.serverCert);
    expect(server.checkIssued(otherCa)).toBe(false);
    expect(server.verify(otherCa.publicKey)).toBe(false);
  });

  it("uses distinct random positive serial numbers", async () => {
    const serials = await Promise.all(
      [paths, other]
        .flatMap((p) => [p.caCert, p.serverCert, ...p.workers.map((w) => w.cert), p.clientCert])
        .map(async (f) => (await cert(f)).serialNumber),
    );
    expect(new Set(serials).size).toBe(serials.length);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9A-F]+$/);
      // Positive DER INTEGER: the most significant bit of the first content byte is clear.
      expect(Number.parseInt(s.slice(0, 2), 16) & 0x80).toBe(0);
      expect(BigInt(`0x${s}`) > 0n).toBe(true);
    }
  });

  it("honours now, validDays and custom hosts", async () => {
    const now = new Date("2030-06-01T12:00:00Z");
    const custom = await generateDevCertificates({
      outDir: join(root, "custom"),
      hosts: ["coordinator.dce.test", "10.1.2.3", "fd00::7"],
      validDays: 30,
      now,
    });
    for (const f of [custom.caCert, custom.serverCert, ...custom.workers.map((w) => w.cert), custom.clientCert]) {
      const c = await cert(f);
      expect(new Date(c.validFrom).toISOString()).toBe("2030-06-01T11:00:00.000Z");
      expect(new Date(c.validTo).toISOString()).toBe("2030-07-01T12:00:00.000Z");
    }
    const server = await cert(custom.serverCert);
    expect(server.checkHost("coordinator.dce.test")).toBe("coordinator.dce.test");
    expect(server.checkIP("10.1.2.3")).toBe("10.1.2.3");
    expect(server.checkIP("fd00::7")).toBe("fd00::7");
    expect(server.checkHost("localhost")).toBeUndefined();
    expect(server.checkIP("127.0.0.1")).toBeUndefined();
    // An IP address must not have been encoded as a DNS name.
    expect(server.subjectAltName).not.toMatch(/DNS:10\.1\.2\.3/);
  });

  it("defaults validity to now - 1h .. now + 825 days", async () => {
    const before = Date.now();
    const server = await cert(paths.serverCert);
    const from = Date.parse(server.validFrom);
    const to = Date.parse(server.validTo);
    expect(to - from).toBe(825 * 86_400_000 + 3_600_000);
    // beforeAll ran just before this test; allow generous slack, 1s certificate granularity.
    expect(from).toBeLessThanOrEqual(before - 3_600_000 + 1000);
    expect(from).toBeGreaterThan(before - 3_600_000 - 120_000);
  });
});
