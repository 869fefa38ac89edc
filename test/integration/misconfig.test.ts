import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { BIN, type Cluster, spawnNode, startCluster, waitFor } from "../support/cluster.js";

// Misconfiguration fails fast and says what to fix (issue 17, item 4), through the bins
// as an operator runs them: a CA that does not match, a file that is not PEM,
// init-certs run twice, tokens written to another data dir than the coordinator's.

let cluster: Cluster;
let scratch: string;
/** ca.pem of a second `init-certs`: the same CA name ("CN=dce dev CA"), another key. */
let otherCa: string;
/** A file that is not PEM. */
let notPem: string;

/** Runs a bin to completion with `env` on top of this process's (DCE_TOKEN cleared). */
function run(bin: string, args: string[], env: Record<string, string> = {}) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: scratch,
    encoding: "utf8",
    env: { ...process.env, DCE_TOKEN: "", DCE_DATA_DIR: "", ...env },
    // A bin that should have stopped at once and did not is SIGTERMed: it then drains and exits 0.
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

beforeAll(async () => {
  cluster = await startCluster({ workers: 0 });
  scratch = mkdtempSync(join(cluster.dir, "misconfig-"));
  const other = run(BIN.coordinator, ["init-certs", "--out", "other", "--workers", "0"]);
  expect(other.status, other.stderr).toBe(0);
  otherCa = join(scratch, "other", "ca.pem");
  notPem = join(scratch, "ca.txt");
  writeFileSync(notPem, "this is not a certificate\n");
});
afterAll(async () => {
  await cluster?.close();
});

describe("a CA that did not sign the coordinator's certificate", () => {
  test("the worker exits 1 within 10 s, naming --ca / DCE_CA and the certificate it saw, without retrying", async () => {
    const started = Date.now();
    const w = spawnNode("worker", BIN.worker, [
      "--coordinator",
      cluster.url,
      "--ca",
      otherCa,
      "--cert",
      cluster.workerCert.cert,
      "--key",
      cluster.workerCert.key,
      "--threads",
      "1",
      "--log-format",
      "json",
    ]);
    onTestFinished(() => {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
    });
    const timer = setTimeout(() => w.child.kill("SIGKILL"), 10_000);
    const code = await w.exited;
    clearTimeout(timer);
    expect(code, w.stderr).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    const fatal = w.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.level === 60);
    expect(fatal).toMatchObject({ code: "SELF_SIGNED_CERT_IN_CHAIN", subject: "CN=dce-coordinator", issuer: "CN=dce dev CA" });
    expect(fatal?.msg).toContain(`is not signed by the CA in --ca / DCE_CA; ${otherCa} holds "CN=dce dev CA"`);
    expect(fatal?.msg).toContain("the CA was probably made again (coordinator init-certs)");
    expect(w.stderr).not.toContain("retrying");
  });

  test("dce exits 1 naming --ca / DCE_CA, given the CA by flag or by DCE_CA", () => {
    for (const [args, env] of [
      [["--ca", otherCa], {}],
      [[], { DCE_CA: otherCa }],
    ] as const) {
      const r = run(BIN.dce, ["status", "some-job", "--coordinator", cluster.url, ...args], {
        DCE_TOKEN: cluster.token,
        ...env,
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^error: unavailable: TLS handshake with the coordinator failed \(SELF_SIGNED_CERT_IN_CHAIN\)/);
      expect(r.stderr).toContain('the coordinator\'s certificate (subject "CN=dce-coordinator", issuer "CN=dce dev CA")');
      expect(r.stderr).toContain("To fix: give --ca / DCE_CA (SDK: `ca`) the CA that signed it");
    }
  });
});

describe("a CA file that is not PEM is refused at start, naming the flag and the file (exit 2, like a missing one)", () => {
  test("worker", () => {
    const r = run(BIN.worker, ["--coordinator", cluster.url, "--ca", notPem]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`error: --ca / DCE_CA file ${notPem} is not PEM: it has no -----BEGIN CERTIFICATE----- block\n`);
  });

  test("dce", () => {
    const r = run(BIN.dce, ["status", "some-job", "--coordinator", cluster.url], { DCE_CA: notPem, DCE_TOKEN: cluster.token });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`error: --ca / DCE_CA file ${notPem} is not PEM: it has no -----BEGIN CERTIFICATE----- block\n`);
  });

  test("coordinator (ca.pem of --tls-dir)", () => {
    const tlsDir = join(scratch, "bad-tls");
    mkdirSync(tlsDir);
    for (const f of ["server.pem", "server-key.pem"]) copyFileSync(join(cluster.tlsDir, f), join(tlsDir, f));
    copyFileSync(notPem, join(tlsDir, "ca.pem"));
    const r = run(BIN.coordinator, ["--tls-dir", tlsDir, "--port", "0", "--data-dir", join(scratch, "never")]);
    expect(r.status).toBe(2);
    expect(r.stdout).not.toContain("listening");
    expect(r.stderr).toContain(`--tls-dir file ${join(tlsDir, "ca.pem")} is not PEM`);
  });
});

describe("init-certs on a folder that holds a CA", () => {
  test("is refused without --force and the CA is kept; --worker still adds to it; --force replaces it and says so", () => {
    const first = run(BIN.coordinator, ["init-certs", "--out", "twice"]);
    expect(first.status).toBe(0);
    const ca = readFileSync(join(scratch, "twice", "ca.pem"), "utf8");
    const again = run(BIN.coordinator, ["init-certs", "--out", "twice", "--workers", "4"]);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(`${join(scratch, "twice", "ca.pem")} already exists; nothing was written`);
    expect(again.stderr).toContain("coordinator init-certs --out twice --worker NAME");
    expect(readFileSync(join(scratch, "twice", "ca.pem"), "utf8")).toBe(ca);
    expect(run(BIN.coordinator, ["init-certs", "--out", "twice", "--worker", "extra"]).status).toBe(0);
    const forced = run(BIN.coordinator, ["init-certs", "--out", "twice", "--force"]);
    expect(forced.status).toBe(0);
    expect(forced.stderr).toContain("replaced the CA");
    expect(forced.stderr).toContain("certificates signed by the previous CA are no longer valid, among them worker-extra.pem");
    expect(readFileSync(join(scratch, "twice", "ca.pem"), "utf8")).not.toBe(ca);
  });
});

describe("coordinator tokens and the coordinator share the data dir", () => {
  test.each([
    ["DCE_DATA_DIR for both", (dir: string) => ({ tokens: [], serve: [], env: { DCE_DATA_DIR: dir } })],
    ["--data-dir before the subcommand", (dir: string) => ({ tokens: ["--data-dir", dir], serve: ["--data-dir", dir], env: {} })],
  ])("%s: the coordinator recognises the token tokens add made", async (_, setup) => {
    const dir = join(scratch, `data-${Math.random().toString(36).slice(2)}`);
    const { tokens, serve, env } = setup(dir);
    const add = run(BIN.coordinator, [...tokens, "tokens", "add", "dana"], env);
    expect(add.status, add.stderr).toBe(0);
    expect(add.stderr).toContain(`token for dana created in ${join(dir, "tokens.json")}`);
    const token = add.stdout.trim();

    const coordinator = spawnNode("coordinator", BIN.coordinator, [...serve, "--tls-dir", cluster.tlsDir, "--port", "0"], {
      DCE_DATA_DIR: "",
      ...env,
    });
    onTestFinished(async () => {
      coordinator.child.kill("SIGKILL");
      await coordinator.exited;
      rmSync(dir, { recursive: true, force: true });
    });
    await waitFor(coordinator, (p) => /listening on (\S+)/.test(p.stdout), 15_000, "listening line");
    const url = (/listening on (\S+)/.exec(coordinator.stdout) as RegExpExecArray)[1] as string;
    const status = run(BIN.dce, ["status", "00000000-0000-4000-8000-000000000000", "--coordinator", url], {
      DCE_CA: cluster.caPath,
      DCE_TOKEN: token,
    });
    // Known token, unknown job: NOT_FOUND, not UNAUTHENTICATED.
    expect(status.stderr).toMatch(/^error: not_found: /);
  });
});
