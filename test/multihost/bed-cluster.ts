import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issueWorkerCertificate } from "@dce/coordinator";
import { BIN, naiveMultiply, ROOT, randomMatrix, runCoordinatorCommand } from "../support/cluster.js";
import { type HostProc, type Testbed, until, upTestbed } from "./testbed.js";

// A dce cluster on the test bed: the TLS coordinator on host "c", workers on "w1".."wN"
// (`--local-store off`: separate hosts share no files), and the SDK on host "cl" through
// client-driver.mjs. Certificates name the coordinator's bed address. Workers serve the
// panels they hold to each other (`--peer-listen` on their bed address) and log at debug,
// so a scenario can count the panels read from peers ("panel fetched", source "peer").
//
// With `relay`, every connection crosses a delaying relay (relay.mjs; delay and jitter where
// the kernel has no netem): one per worker and one for the client in the coordinator's host
// (each dials its own port there), and one in front of each worker's panel server (the
// address it advertises to peers).

const PORT = 7443;
/** A worker's panel server; its relay listens on the next port. */
const PEER_PORT = 7600;
const DRIVER = join(ROOT, "test/multihost/client-driver.mjs");

/** One job of a client run: C = A·B with A m×k and B k×n from `seed`. */
export interface JobSpec {
  readonly key: string;
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly seed: number;
  readonly tileSize: number;
}

export interface BedCluster {
  readonly bed: Testbed;
  /** The coordinator's own address (no relay). */
  readonly url: string;
  readonly coordinator: HostProc;
  readonly workers: HostProc[];
  /** The relays, when the cluster has them. */
  readonly relays: HostProc[];
  /** Panels `worker` read from a peer so far (its "panel fetched" lines with source "peer"). */
  peerReads(worker: HostProc): number;
  /** Starts the client driver on host "cl" with `jobs`. */
  client(jobs: JobSpec[], o?: { timeoutMs?: number; reconnectBudgetMs?: number; attempts?: number }): HostProc;
  /** The events the driver printed so far. */
  events(p: HostProc): Array<Record<string, unknown> & { ev: string }>;
  /** Asserts every job's C equals the naive product, byte for byte; returns the keys that differ. */
  wrongResults(jobs: JobSpec[]): string[];
  /** GET /metrics from the client host (admin token): value of each sample line by its name and labels. */
  metrics(): Map<string, number>;
  close(): Promise<void>;
}

/**
 * The clean run's C of `j`, as bytes: the naive product, computed once per shape and seed
 * (scenarios run the same jobs, and each product takes seconds in JavaScript).
 */
const cleanProducts = new Map<string, Buffer>();
function cleanProduct(j: JobSpec): Buffer {
  const key = `${j.m}x${j.k}x${j.n}@${j.seed}`;
  let c = cleanProducts.get(key);
  if (c === undefined) {
    const want = naiveMultiply(randomMatrix(j.m, j.k, j.seed), randomMatrix(j.k, j.n, j.seed + 1));
    c = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
    cleanProducts.set(key, c);
  }
  return c;
}

export async function startBedCluster(o: {
  workers: number;
  leaseTtlMs: number;
  rate?: string;
  coordinatorArgs?: string[];
  workerArgs?: string[];
  /** Delay and jitter (ms) on every connection, by relays. */
  relay?: { delayMs: number; jitterMs: number };
}): Promise<BedCluster> {
  const workerHosts = Array.from({ length: o.workers }, (_, i) => `w${i + 1}`);
  const bed = upTestbed(["c", ...workerHosts, "cl"], o.rate ? { rate: o.rate } : {});
  const dir = mkdtempSync(join(tmpdir(), "dce-bed-"));
  const out = join(dir, "out");
  mkdirSync(out);
  const close = async () => {
    await bed.down();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const tlsDir = join(dir, "certs");
    const dataDir = join(dir, "data");
    const caPath = join(tlsDir, "ca.pem");
    const host = bed.addr["c"] as string;
    const url = `https://${host}:${PORT}`;
    await runCoordinatorCommand(["init-certs", "--out", tlsDir, "--workers", "0", "--hosts", host]);
    const token = await runCoordinatorCommand(["tokens", "add", "bed-client", "--data-dir", dataDir]);
    const adminToken = await runCoordinatorCommand(["tokens", "add", "bed-admin", "--role", "admin", "--data-dir", dataDir]);
    const coordinator = bed.node("c", "coordinator", BIN.coordinator, [
      ...["--host", host, "--port", String(PORT), "--tls-dir", tlsDir, "--data-dir", dataDir],
      ...["--lease-ttl-ms", String(o.leaseTtlMs), "--local-store", "off", ...(o.coordinatorArgs ?? [])],
    ]);
    await until(() => /listening on/.test(coordinator.stdout), 20_000, "the coordinator's listening line", coordinator);
    // Where each host dials the coordinator, and where each worker's panel server is reached.
    const relays: HostProc[] = [];
    const urlOf: Record<string, string> = {};
    const peerAt: Record<string, string> = {};
    const { relay } = o;
    for (const [i, h] of [...workerHosts, "cl"].entries()) {
      urlOf[h] = url;
      if (relay === undefined) continue;
      const listen = `${host}:${PORT + 1 + i}`;
      relays.push(await bed.relay("c", { listen, target: `${host}:${PORT}`, ...relay }));
      urlOf[h] = `https://${listen}`;
    }
    for (const w of workerHosts) {
      const own = `${bed.addr[w]}:${PEER_PORT}`;
      peerAt[w] = own;
      if (relay === undefined) continue;
      const listen = `${bed.addr[w]}:${PEER_PORT + 1}`;
      relays.push(await bed.relay(w, { listen, target: own, ...relay }));
      peerAt[w] = listen;
    }
    const workers: HostProc[] = [];
    for (const w of workerHosts) {
      const cert = await issueWorkerCertificate({ dir: tlsDir, name: w });
      const p = bed.node(w, w, BIN.worker, [
        ...["--coordinator", urlOf[w] as string, "--ca", caPath, "--cert", cert.cert, "--key", cert.key, "--name", w],
        ...["--threads", "1", "--kernels", "reference", "--local-store", "off", "--log-level", "debug"],
        ...["--peer-listen", `${bed.addr[w]}:${PEER_PORT}`, "--peer-advertise", peerAt[w] as string, ...(o.workerArgs ?? [])],
      ]);
      workers.push(p);
    }
    for (const p of workers) await until(() => p.stderr.includes("worker registered"), 20_000, `${p.name} registered`, p);
    const events = (p: HostProc) =>
      p.stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown> & { ev: string });
    return {
      bed,
      url,
      coordinator,
      workers,
      relays,
      peerReads: (w) =>
        w.stderr.split("\n").filter((l) => l.includes('"msg":"panel fetched"') && l.includes('"source":"peer"')).length,
      client: (jobs, co = {}) =>
        bed.node("cl", "client", DRIVER, [JSON.stringify({ baseUrl: urlOf["cl"], caPath, token, out, jobs, ...co })]),
      events,
      wrongResults: (jobs) =>
        jobs
          .filter((j) => {
            const want = cleanProduct(j);
            let got: Buffer;
            try {
              got = readFileSync(join(out, `${j.key}.bin`));
            } catch {
              return true;
            }
            return !got.equals(want);
          })
          .map((j) => j.key),
      metrics() {
        const text = execFileSync(
          join(ROOT, "scripts/testbed.sh"),
          [
            "run",
            bed.id,
            "cl",
            "curl",
            "-sS",
            "-m",
            "10",
            "--cacert",
            caPath,
            "-H",
            `authorization: Bearer ${adminToken}`,
            `${url}/metrics`,
          ],
          { encoding: "utf8", timeout: 15_000 },
        );
        const m = new Map<string, number>();
        for (const line of text.split("\n")) {
          if (line.startsWith("#") || line.trim() === "") continue;
          const sp = line.lastIndexOf(" ");
          m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
        }
        return m;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
