import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { createClient } from "@dce/client-sdk";
import { generateDevCertificates } from "@dce/coordinator";
import { BlobService, JobService, LeaseState, WorkerService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import {
  BIN,
  type CertFiles,
  type Cluster,
  naiveMultiply,
  randomMatrix,
  sameBytes,
  spawnNode,
  startCluster,
} from "../support/cluster.js";
import { bearer, getHttp1 } from "../support/ops.js";

// Authentication and authorization of a real coordinator process: workers prove who
// they are with CA-signed client certificates, clients with bearer tokens, and one
// access table decides what each may call (SECURITY.md).

let cluster: Cluster;
/** A certificate from a CA the coordinator does not trust. */
let foreign: CertFiles;
const scratch = mkdtempSync(join(tmpdir(), "dce-auth-"));

beforeAll(async () => {
  cluster = await startCluster({ workers: 0 });
  const other = await generateDevCertificates({ outDir: join(scratch, "other-ca") });
  const [w] = other.workers;
  if (!w) throw new Error("init-certs wrote no worker certificate");
  foreign = { cert: w.cert, key: w.key };
});
afterAll(async () => {
  await cluster?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** The code a call ends with ("ok" on success), and its message. */
async function outcome(p: Promise<unknown>): Promise<{ code: Code | "ok"; message: string }> {
  try {
    await p;
    return { code: "ok", message: "" };
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: err.code, message: err.rawMessage };
  }
}

const offer = { name: "reference", fingerprint: "test/1" };
const register = (cert: CertFiles | null) =>
  cluster.raw(WorkerService, { cert, token: null }).registerWorker({ name: "probe", kernels: [offer], threads: 1 });

function bytesOf(m: { data: Float64Array }): Uint8Array {
  return new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
}

/** Writes a float64 C-order `.npy` (format 1.0: magic, header padded to a multiple of 64, data). */
function writeNpy(path: string, m: { rows: number; cols: number; data: Float64Array }): void {
  const dict = `{'descr': '<f8', 'fortran_order': False, 'shape': (${m.rows}, ${m.cols}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = `${dict.padEnd(total - 10 - 1, " ")}\n`;
  const prefix = Buffer.from([0x93, ...Buffer.from("NUMPY"), 1, 0, header.length & 0xff, header.length >> 8]);
  writeFileSync(path, Buffer.concat([prefix, Buffer.from(header, "latin1"), bytesOf(m)]));
}

describe("workers prove their identity with a client certificate", () => {
  test("no client certificate: UNAUTHENTICATED on every worker RPC", async () => {
    const workers = cluster.raw(WorkerService, { cert: null, token: null });
    const reg = await outcome(workers.registerWorker({ name: "x", kernels: [offer], threads: 1 }));
    expect(reg.code).toBe(Code.Unauthenticated);
    expect(reg.message).toContain("no client certificate was presented");
    expect((await outcome(workers.acquireShards({ workerId: "x", maxShards: 1 }))).code).toBe(Code.Unauthenticated);
    expect((await outcome(workers.heartbeat({ workerId: "x" }))).code).toBe(Code.Unauthenticated);
    expect((await outcome(workers.completeShards({ workerId: "x" }))).code).toBe(Code.Unauthenticated);
    expect((await outcome(workers.failShard({ workerId: "x" }))).code).toBe(Code.Unauthenticated);
    // Nor can it read input blobs.
    const blobs = cluster.raw(BlobService, { cert: null, token: null });
    expect((await outcome(blobs.readBlob({ blobId: "0".repeat(64) }))).code).toBe(Code.Unauthenticated);
  });

  test("a certificate signed by another CA: UNAUTHENTICATED", async () => {
    const r = await outcome(register(foreign));
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.message).toMatch(/the client certificate was refused \(\w+/);
  });

  test("an expired certificate from the right CA: UNAUTHENTICATED, naming the expiry", async () => {
    const expired = await cluster.issueWorkerCert("expired", { now: new Date(Date.now() - 10 * 86_400_000), validDays: 1 });
    const r = await outcome(register(expired));
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.message).toContain("CERT_HAS_EXPIRED");
  });

  test("a CA-signed certificate without OU=worker (the client certificate): UNAUTHENTICATED", async () => {
    const r = await outcome(register({ cert: join(cluster.tlsDir, "client.pem"), key: join(cluster.tlsDir, "client-key.pem") }));
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.message).toContain("OU=worker");
  });

  test("a client token is no worker credential", async () => {
    const r = await outcome(
      cluster.raw(WorkerService, { cert: null }).registerWorker({ name: "x", kernels: [offer], threads: 1 }),
    );
    expect(r.code).toBe(Code.Unauthenticated);
  });

  test("a worker cannot renew, complete or fail another worker's lease: PERMISSION_DENIED", async () => {
    const ownerCert = await cluster.issueWorkerCert("owner");
    const thiefCert = await cluster.issueWorkerCert("thief");
    const owner = cluster.raw(WorkerService, { cert: ownerCert, token: null });
    const thief = cluster.raw(WorkerService, { cert: thiefCert, token: null });
    const ownerId = (await owner.registerWorker({ name: "owner", kernels: [offer], threads: 1 })).workerId;
    const thiefId = (await thief.registerWorker({ name: "thief", kernels: [offer], threads: 1 })).workerId;

    const a = randomMatrix(8, 5, 71);
    const b = randomMatrix(5, 8, 72);
    const job = await createClient(cluster.clientOptions).submitMatMul(a, b, { tileSize: 8, kernel: "reference" });
    let lease: Awaited<ReturnType<typeof owner.acquireShards>>["leases"][number]["lease"];
    for (let i = 0; i < 20 && !lease; i++) {
      lease = (await owner.acquireShards({ workerId: ownerId, maxShards: 1, waitMs: 1000 })).leases[0]?.lease;
    }
    if (!lease) throw new Error("the owner got no lease");
    expect(lease.jobId).toBe(job.id);
    const tile = bytesOf({ data: naiveMultiply(a, b) });
    const result = { lease, payload: { case: "data" as const, value: tile } };

    // Naming the owner's worker id from another certificate: refused before anything happens.
    for (const call of [
      thief.heartbeat({ workerId: ownerId, leases: [lease] }),
      thief.completeShards({ workerId: ownerId, results: [result] }),
      thief.failShard({ workerId: ownerId, lease, error: "stolen", release: true }),
      thief.acquireShards({ workerId: ownerId, maxShards: 1 }),
    ]) {
      const r = await outcome(call);
      expect(r.code).toBe(Code.PermissionDenied);
      expect(r.message).toContain("registered by another identity");
    }
    // Under its own worker id the lease is still not the thief's.
    const own = await thief.completeShards({ workerId: thiefId, results: [result] });
    expect(own.outcomes[0]?.code).toBe(Code.PermissionDenied);

    // The owner's lease is untouched, and its result is the one accepted.
    const hb = await owner.heartbeat({ workerId: ownerId, leases: [lease] });
    expect(hb.leases[0]?.state).toBe(LeaseState.ACTIVE);
    const done = await owner.completeShards({ workerId: ownerId, results: [result] });
    expect(done.outcomes[0]?.code).toBe(0);
    expect(sameBytes((await job.result()).data, naiveMultiply(a, b))).toBe(true);
  });
});

describe("clients prove their identity with a bearer token", () => {
  test("a worker certificate without a token is no client: UNAUTHENTICATED on JobService; uploads are open to workers", async () => {
    const jobs = cluster.raw(JobService, { token: null });
    const r = await outcome(jobs.getJob({ jobId: "x" }));
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.message).toContain("bearer token");
    expect((await outcome(jobs.submitJob({}))).code).toBe(Code.Unauthenticated);
    const blobs = cluster.raw(BlobService, { token: null });
    // Workers upload result tiles (too large for one message, or through the local store).
    const begin = await blobs.beginUpload({ sizeBytes: 8n, sha256: "0".repeat(64) });
    expect(begin.uploadId).not.toBe("");
  });

  test("a missing, wrong or malformed token: UNAUTHENTICATED, and the message never echoes it", async () => {
    const wrong = `dce_${"A".repeat(43)}`;
    for (const token of [undefined, wrong, cluster.token.slice(0, -1)]) {
      const client = createClient({ baseUrl: cluster.url, ca: cluster.ca, ...(token ? { token } : {}) });
      const r = await outcome(client.submitMatMul(randomMatrix(2, 2, 1), randomMatrix(2, 2, 2)));
      expect(r.code).toBe(Code.Unauthenticated);
      if (token) expect(r.message).not.toContain(token);
    }
    const basic = await outcome(
      cluster.raw(JobService, { token: null }).getJob({ jobId: "x" }, { headers: { authorization: "Basic Zm9vOmJhcg==" } }),
    );
    expect(basic.code).toBe(Code.Unauthenticated);
    expect(basic.message).toContain("not 'Bearer <token>'");
  });

  test("a revoked token stops working without a restart", async () => {
    const token = await cluster.tokens("add", "short-lived");
    const client = createClient({ ...cluster.clientOptions, token });
    expect((await outcome(client.getJobHandle("none").status())).code).toBe(Code.NotFound);
    await cluster.tokens("revoke", "short-lived");
    // The coordinator looks at the token file every 250 ms.
    const deadline = Date.now() + 10_000;
    let r = await outcome(client.getJobHandle("none").status());
    while (r.code !== Code.Unauthenticated && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 50));
      r = await outcome(client.getJobHandle("none").status());
    }
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.message).toContain("wrong, revoked or rotated");
  });

  test("a client sees, downloads and cancels only its own jobs; anybody else's is NOT_FOUND; an admin sees all", async () => {
    const alice = createClient({ ...cluster.clientOptions, token: await cluster.tokens("add", "alice") });
    const bob = createClient({ ...cluster.clientOptions, token: await cluster.tokens("add", "bob") });
    const admin = createClient({ ...cluster.clientOptions, token: cluster.adminToken });
    // No worker runs here: the job stays queued, so a cancel would take effect.
    const job = await alice.submitMatMul(randomMatrix(4, 4, 81), randomMatrix(4, 4, 82), { tileSize: 2 });
    const missing = await outcome(bob.getJobHandle("00000000-0000-4000-8000-000000000000").status());
    const theirs = bob.getJobHandle(job.id);
    for (const call of [theirs.status(), theirs.result({ timeoutMs: 2_000 }), theirs.cancel({ reason: "not mine" })]) {
      const r = await outcome(call);
      expect(r.code).toBe(Code.NotFound);
      // Exactly what a job that does not exist answers: nothing tells the two apart.
      expect(r.message.replace(job.id, "ID")).toBe(missing.message.replace("00000000-0000-4000-8000-000000000000", "ID"));
    }
    const raw = await outcome(
      cluster.raw(JobService, { token: await cluster.tokens("add", "carol") }).getResult({ jobId: job.id }),
    );
    expect(raw.code).toBe(Code.NotFound);
    expect((await job.status()).state).toBe("queued");
    // The admin sees it and may cancel it; the owner sees the cancel.
    expect((await admin.getJobHandle(job.id).status()).state).toBe("queued");
    await admin.getJobHandle(job.id).cancel({ reason: "admin" });
    expect((await job.status()).state).toBe("cancelled");
  });
});

describe("operations endpoints", () => {
  test("/metrics and the dashboard data need the admin role; /healthz and the dashboard page are open", async () => {
    const url = (p: string) => `${cluster.url}${p}`;
    expect((await getHttp1(url("/healthz"), cluster.ca)).status).toBe(200);
    expect((await getHttp1(url("/ui"), cluster.ca)).status).toBe(200);
    for (const path of ["/metrics", "/ui/api/state"]) {
      const none = await getHttp1(url(path), cluster.ca);
      expect(none.status).toBe(401);
      expect(none.headers["www-authenticate"]).toBe('Bearer realm="dce"');
      expect((await getHttp1(url(path), cluster.ca, bearer("dce_nope"))).status).toBe(401);
      const client = await getHttp1(url(path), cluster.ca, bearer(cluster.token));
      expect(client.status).toBe(403);
      expect(client.body).toContain("token test-client may not call it");
      expect((await getHttp1(url(path), cluster.ca, bearer(cluster.adminToken))).status).toBe(200);
    }
  });
});

describe("request fields are data, never code or paths", () => {
  test("blob ids that are not hex SHA-256 never reach the file system; kernel names are registry keys", async () => {
    const blobs = cluster.raw(BlobService);
    for (const blobId of ["../journal/00000000.log", "../../../../etc/passwd", "/etc/passwd", "ab/../../tokens.json", ""]) {
      const r = await outcome(blobs.readBlob({ blobId }));
      expect(r.code).toBe(Code.NotFound);
    }
    const jobs = cluster.raw(JobService);
    const submit = (blobId: string, kernel = "reference") =>
      outcome(
        jobs.submitJob({
          matmul: { a: { rows: 1, cols: 1, blobId }, b: { rows: 1, cols: 1, blobId }, tileRows: 1, tileCols: 1, kernel },
        }),
      );
    expect((await submit("../tokens.json")).code).toBe(Code.NotFound);
    // A real blob, with kernels that are not in the registry.
    const one = new Uint8Array(new Float64Array([1]).buffer);
    const sha256 = createHash("sha256").update(one).digest("hex");
    const begin = await blobs.beginUpload({ sizeBytes: 8n, sha256 });
    if (!begin.alreadyPresent) {
      await blobs.uploadChunk({ uploadId: begin.uploadId, offset: 0n, data: one });
      await blobs.finishUpload({ uploadId: begin.uploadId });
    }
    for (const kernel of ["../../../tmp/evil.node", "require('child_process').exec('id')", "native-blas; rm -rf /"]) {
      const r = await submit(sha256, kernel);
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toContain("unknown kernel");
    }
  });
});

describe("through the bins", () => {
  test("a worker without a CA-signed certificate cannot pull work; a client without a token cannot submit", async () => {
    const dir = mkdtempSync(join(scratch, "bins-"));
    const env = { DCE_COORDINATOR: cluster.url, DCE_CA: cluster.caPath };
    writeNpy(join(dir, "A.npy"), randomMatrix(16, 12, 91));
    writeNpy(join(dir, "B.npy"), randomMatrix(12, 16, 92));
    const dce = (extraEnv: Record<string, string>, args: string[]) =>
      spawnSync(process.execPath, [BIN.dce, ...args], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, DCE_TOKEN: "", ...env, ...extraEnv },
        timeout: 120_000,
      });

    // No token: refused before anything is uploaded.
    const anonymous = dce({}, ["submit", "A.npy", "B.npy", "--no-wait"]);
    expect(anonymous.status).toBe(1);
    expect(anonymous.stderr).toMatch(/^error: unauthenticated: /);

    // Workers without a certificate, or with one from another CA, exit without work and say what to fix.
    for (const [name, certArgs, problem] of [
      ["no-cert", [], "requires a client certificate and this worker presented none"],
      [
        "other-ca",
        ["--cert", foreign.cert, "--key", foreign.key],
        `refused this worker's client certificate (subject "OU=worker, CN=worker-1", issuer "CN=dce dev CA", from --cert ${foreign.cert})`,
      ],
    ] as const) {
      const w = spawnNode(name, BIN.worker, [
        "--coordinator",
        cluster.url,
        "--ca",
        cluster.caPath,
        "--threads",
        "1",
        ...certArgs,
      ]);
      onTestFinished(() => {
        w.child.kill("SIGKILL");
      });
      expect(await w.exited).toBe(1);
      expect(w.stderr).toContain("[unauthenticated]");
      expect(w.stderr).toContain(JSON.stringify(problem).slice(1, -1)); // a JSON log line
      expect(w.stderr).toContain("To fix: give --cert / --key (DCE_WORKER_CERT / DCE_WORKER_KEY) a certificate signed by the CA");
      expect(w.stderr).not.toContain("worker registered");
    }

    // With a token the job is accepted, and it waits for a worker with a certificate.
    const sub = dce({ DCE_TOKEN: cluster.token }, ["submit", "A.npy", "B.npy", "--no-wait", "--tile", "8"]);
    expect(sub.stderr).toBe("");
    expect(sub.status).toBe(0);
    const jobId = sub.stdout.trim().split("\n")[0] as string;
    expect(JSON.parse(dce({ DCE_TOKEN: cluster.token }, ["status", jobId, "--json"]).stdout)).toMatchObject({
      state: "queued",
      shardsDone: 0,
    });
    await cluster.addWorker("certified");
    const res = dce({ DCE_TOKEN: cluster.token }, ["result", jobId, "-o", "C.npy"]);
    expect(res.status).toBe(0);
  });
});

describe("development mode is for loopback only", () => {
  test.each([["--dev-no-auth"], ["--insecure"]])("coordinator %s on a non-loopback host refuses to start", async (flag) => {
    const p = spawnNode("coordinator", BIN.coordinator, [
      flag,
      "--host",
      "0.0.0.0",
      "--port",
      "0",
      "--tls-dir",
      cluster.tlsDir,
      "--data-dir",
      join(scratch, "never"),
    ]);
    expect(await p.exited).toBe(2);
    expect(p.stderr).toContain("only allowed on a loopback host");
    expect(p.stdout).not.toContain("listening");
  });
});

describe("secrets stay out of the logs", () => {
  test("a job at debug log level: no token and no private key in any coordinator, worker or dce output line", async () => {
    const loud = await startCluster({
      workers: 2,
      extraCoordinatorArgs: ["--log-level", "debug"],
      extraWorkerArgs: ["--log-level", "debug"],
    });
    onTestFinished(() => loud.close());
    const dir = mkdtempSync(join(scratch, "logs-"));
    writeNpy(join(dir, "A.npy"), randomMatrix(40, 30, 101));
    writeNpy(join(dir, "B.npy"), randomMatrix(30, 20, 102));
    const wrong = `dce_${"x".repeat(43)}`;
    const outputs: string[] = [];
    const dce = (token: string, args: string[]) => {
      const r = spawnSync(process.execPath, [BIN.dce, ...args], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, DCE_COORDINATOR: loud.url, DCE_CA: loud.caPath, DCE_TOKEN: token },
        timeout: 120_000,
      });
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const sub = dce(loud.token, ["submit", "A.npy", "B.npy", "-o", "C.npy", "--tile", "8"]);
    expect(sub.status).toBe(0);
    // --token on the command line too, and refused tokens: none may be echoed anywhere.
    expect(dce("", ["status", sub.stdout.trim().split("\n")[0] as string, "--token", loud.token]).status).toBe(0);
    expect(dce(wrong, ["status", "nope"]).status).toBe(1);
    expect(dce(loud.token.slice(0, -2), ["status", "nope"]).status).toBe(1);
    expect((await getHttp1(`${loud.url}/metrics`, loud.ca, bearer(loud.adminToken))).status).toBe(200);
    expect((await getHttp1(`${loud.url}/metrics`, loud.ca, bearer(wrong))).status).toBe(401);
    const first = loud.coordinator;
    await loud.restartCoordinator("SIGTERM");

    const lines = [first, loud.coordinator, ...loud.workers].flatMap((p) => [p.stdout, p.stderr]).concat(outputs);
    const text = lines.join("\n");
    expect(text).toContain('"level":20'); // debug lines were written
    const keys = readdirSync(loud.tlsDir)
      .filter((f) => f.endsWith("-key.pem"))
      .map((f) => readFileSync(join(loud.tlsDir, f), "utf8").split("\n")[1] as string);
    for (const secret of [loud.token, loud.adminToken, wrong, loud.token.slice(0, -2), ...keys]) {
      expect(secret.length).toBeGreaterThan(20);
      expect(text).not.toContain(secret);
    }
    expect(text).not.toContain("PRIVATE KEY");
  });
});
