import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { keyPairProblem, pemProblem, readPemCertificates, summarizeCertificate } from "./pem.js";
import { caA, caB, serverA, serverKeyA, workerA } from "./test-support/tls-fixtures.js";

const der = (pem: string): Uint8Array => new Uint8Array(new X509Certificate(pem).raw);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("pemProblem", () => {
  it("accepts a PEM certificate, a bundle of several, and text around the blocks", () => {
    expect(pemProblem(bytes(caA), "certificate")).toBeUndefined();
    expect(pemProblem(bytes(`# bundle\n${caA}${caB}`), "certificate")).toBeUndefined();
    const read = readPemCertificates(`${caA}\n${caB}`);
    expect("certificates" in read && read.certificates.length).toBe(2);
  });

  it.each([
    ["a text file", "hello\n", /^is not PEM: it has no -----BEGIN CERTIFICATE----- block$/],
    ["an empty file", "", /^is empty$/],
    ["a private key", serverKeyA, /^is not PEM: it has no -----BEGIN CERTIFICATE----- block; it holds a PRIVATE KEY$/],
  ])("refuses %s as a certificate", (_, text, problem) => {
    expect(pemProblem(bytes(text), "certificate")).toMatch(problem);
  });

  it("says when a certificate is DER", () => {
    expect(pemProblem(der(caA), "certificate")).toMatch(/^is DER, not PEM \(convert it/);
  });

  it("refuses a block that does not parse, naming which one", () => {
    const broken = caB.replace(/\n[A-Za-z0-9+/]{20}/, "\nAAAAAAAAAAAAAAAAAAAA");
    expect(pemProblem(bytes(broken), "certificate")).toMatch(
      /^is not a valid PEM certificate file: its certificate does not parse/,
    );
    expect(pemProblem(bytes(caA + broken), "certificate")).toMatch(/certificate 2 of 2 does not parse/);
  });

  it("accepts a PEM private key; refuses a certificate, text or a broken key in its place", () => {
    expect(pemProblem(bytes(serverKeyA), "private key")).toBeUndefined();
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs1", format: "pem" });
    expect(pemProblem(rsa, "private key")).toBeUndefined();
    expect(pemProblem(bytes(workerA), "private key")).toBe(
      "is not PEM: it has no -----BEGIN PRIVATE KEY----- block; it holds a CERTIFICATE",
    );
    expect(pemProblem(bytes("key"), "private key")).toMatch(/^is not PEM/);
    const broken = serverKeyA.replace(/\n[A-Za-z0-9+/]{20}/, "\nAAAAAAAAAAAAAAAAAAAA");
    expect(pemProblem(bytes(broken), "private key")).toMatch(/^is not a usable PEM private key: /);
  });
});

describe("keyPairProblem", () => {
  it("accepts a certificate with its key and refuses another key", () => {
    expect(keyPairProblem(serverA, serverKeyA)).toBeUndefined();
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" });
    expect(keyPairProblem(workerA, other)).toBe("is not the private key of the certificate");
  });
});

describe("summarizeCertificate", () => {
  it("shows subject and issuer as one line each, the names and the end of validity", () => {
    const s = summarizeCertificate(new X509Certificate(serverA));
    expect(s).toMatchObject({ subject: "CN=dce-coordinator", issuer: "CN=dce dev CA", validTo: "2124-12-08T00:00:00.000Z" });
    expect(s.names).toEqual(["DNS:localhost", "IP Address:127.0.0.1"]);
    expect(summarizeCertificate(new X509Certificate(workerA)).subject).toBe("OU=worker, CN=worker-1");
  });
});
