// Soak: a coordinator that serves several clients for a long stretch stays bounded.
//
//   pnpm test:soak                       10 minutes (DCE_SOAK_MS), --retention 30s
//   DCE_SOAK_MS=60000 DCE_SOAK_RETENTION=5s pnpm exec vitest run --project soak   (CI's short run)
//
// Three clients, each with its own token, submit small jobs back to back: most are
// fetched and checked byte for byte against the first result of the same inputs; some
// are deleted, some cancelled, some left for retention to remove. One in ten has inputs
// of its own (checked at 64 entries against a naive product), so the store's blob files
// come and go as retention and the collector remove them. Every few seconds the
// test samples the coordinator's data dir (bytes, blob files), its journal's bytes, its
// resident set and its open file descriptors, prints the curves and checks that each one
// plateaus: the peak of the last third of the run is not above the peak of the middle
// third by more than a margin. No job may be lost: every submit ends in a result, a
// cancellation or a deletion the test asked for.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createClient, type DceClient, type JobHandle } from "@dce/client-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

const DURATION_MS = Number(process.env.DCE_SOAK_MS ?? 600_000);
const RETENTION = process.env.DCE_SOAK_RETENTION ?? "30s";
const SAMPLE_MS = Math.max(1000, Math.min(10_000, Math.floor(DURATION_MS / 60)));
const CLIENTS = 3;

interface Sample {
  readonly atMs: number;
  readonly dataBytes: number;
  readonly blobFiles: number;
  readonly journalBytes: number;
  readonly rssBytes: number;
  readonly fds: number;
  readonly jobs: number;
}

/** Bytes and files under `dir`, and how many of them are blobs (under blobs/). */
function du(dir: string): { bytes: number; blobFiles: number; journalBytes: number } {
  let bytes = 0;
  let blobFiles = 0;
  let journalBytes = 0;
  const walk = (d: string, top: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return; // removed while walking
    }
    for (const name of names) {
      const p = join(d, name);
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      const area = top || name;
      if (st.isDirectory()) walk(p, area);
      else {
        bytes += st.size;
        if (area === "blobs") blobFiles++;
        if (area === "journal") journalBytes += st.size;
      }
    }
  };
  walk(dir, "");
  return { bytes, blobFiles, journalBytes };
}

function procStat(pid: number): { rssBytes: number; fds: number } {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { rssBytes: m ? Number(m[1]) * 1024 : 0, fds: readdirSync(`/proc/${pid}/fd`).length };
}

const MiB = 1024 * 1024;

/** Peak of the last third against the peak of the middle third, with an absolute margin. */
function plateau(samples: readonly Sample[], key: keyof Sample, margin: number): { middle: number; last: number; ok: boolean } {
  const third = Math.floor(samples.length / 3);
  const peak = (xs: readonly Sample[]) => Math.max(...xs.map((s) => s[key]));
  const middle = peak(samples.slice(third, 2 * third));
  const last = peak(samples.slice(2 * third));
  return { middle, last, ok: last <= middle * 1.25 + margin };
}

describe("soak: many small jobs from several clients", () => {
  let cluster: Cluster;
  const clients: DceClient[] = [];
  let admin: DceClient;

  beforeAll(async () => {
    cluster = await startCluster({
      workers: 2,
      extraCoordinatorArgs: ["--retention", RETENTION, "--gc-interval", "2s", "--blob-grace", "5s"],
    });
    for (let i = 1; i <= CLIENTS; i++) {
      const token = (await cluster.tokens("add", `soak-${i}`)).split(/\s+/).at(-1) as string;
      clients.push(createClient({ ...cluster.clientOptions, token }));
    }
    admin = createClient({ ...cluster.clientOptions, token: cluster.adminToken });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it(`stays bounded for ${Math.round(DURATION_MS / 1000)} s`, { timeout: DURATION_MS + 180_000 }, async () => {
    // Inputs: a few shapes, below and above the inline limit (1 MiB), so both paths run.
    const shapes: [number, number, number][] = [
      [64, 64, 64],
      [96, 80, 72],
      [384, 384, 384],
    ];
    const inputs = shapes.map(([m, k, n], s) => ({ a: randomMatrix(m, k, 10 + s), b: randomMatrix(k, n, 20 + s) }));
    const firstResult: (Float64Array | undefined)[] = inputs.map(() => undefined);
    const counts = { submitted: 0, fresh: 0, fetched: 0, deleted: 0, cancelled: 0, leftForRetention: 0, mismatches: 0 };
    const samples: Sample[] = [];
    const t0 = Date.now();
    const stopAt = t0 + DURATION_MS;

    const sampler = setInterval(async () => {
      const d = du(cluster.dataDir);
      const p = procStat(cluster.coordinator.child.pid as number);
      let jobs = 0;
      try {
        for await (const _ of admin.listJobs({ pageSize: 1000 })) jobs++;
      } catch {
        jobs = -1;
      }
      samples.push({
        atMs: Date.now() - t0,
        dataBytes: d.bytes,
        blobFiles: d.blobFiles,
        journalBytes: d.journalBytes,
        ...p,
        jobs,
      });
    }, SAMPLE_MS);

    // One job in ten has inputs no other job has (inline and uploaded in turn), so its A, B
    // and C are blobs of their own that only retention and the collector remove: with the
    // shared inputs alone the store would hold the same 9 blobs all run long.
    const freshJob = async (client: DceClient, c: number, n: number) => {
      const [m, k, w] = (n / 10) % 2 < 1 ? [64, 64, 64] : [384, 384, 384];
      const a = randomMatrix(m, k, 1000 + c * 1_000_000 + n);
      const b = randomMatrix(k, w, 2000 + c * 1_000_000 + n);
      const job = await client.submitMatMul(a, b);
      counts.submitted++;
      counts.fresh++;
      const out = await job.result();
      counts.fetched++;
      counts.leftForRetention++;
      for (let t = 0; t < 64; t++) {
        const i = (t * 7919 + n) % m;
        const j = (t * 104_729 + c) % w;
        let want = 0;
        for (let x = 0; x < k; x++) want += (a.data[i * k + x] as number) * (b.data[x * w + j] as number);
        if (Math.abs(want - (out.data[i * w + j] as number)) > 1e-9 * k) throw new Error(`wrong C[${i},${j}] of a fresh job`);
      }
    };

    const loop = async (client: DceClient, c: number) => {
      for (let n = 0; Date.now() < stopAt; n++) {
        const fate = n % 10;
        if (fate === 9) {
          await freshJob(client, c, n);
          continue;
        }
        const s = (n + c) % inputs.length;
        const { a, b } = inputs[s] as (typeof inputs)[number];
        const job: JobHandle = await client.submitMatMul(a, b);
        counts.submitted++;
        if (fate === 7) {
          await job.cancel({ reason: "soak" }).catch(() => undefined); // may already have finished
          counts.cancelled++;
          continue;
        }
        const out = await job.result();
        counts.fetched++;
        const first = firstResult[s];
        if (first === undefined) {
          const want = naiveMultiply(a, b);
          for (let i = 0; i < want.length; i++)
            if (Math.abs((want[i] as number) - (out.data[i] as number)) > 1e-9 * a.cols)
              throw new Error(`wrong C[${i}] for shape ${s}`);
          firstResult[s] = out.data;
        } else if (!sameBytes(first, out.data)) counts.mismatches++;
        if (fate === 3 || fate === 5) {
          await job.delete();
          counts.deleted++;
          await expect(job.status()).rejects.toThrow(/not[_ ]found/i);
        } else counts.leftForRetention++;
      }
    };
    try {
      await Promise.all(clients.map((c, i) => loop(c, i)));
    } finally {
      clearInterval(sampler);
    }

    const fmt = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
    const step = Math.max(1, Math.floor(samples.length / 20));
    const lines = ["   t(s)  data dir  blobs   journal       rss  fds  jobs"];
    for (let i = 0; i < samples.length; i += step) {
      const s = samples[i] as Sample;
      lines.push(
        `${String(Math.round(s.atMs / 1000)).padStart(7)} ${fmt(s.dataBytes).padStart(9)} ${String(s.blobFiles).padStart(6)} ${fmt(s.journalBytes).padStart(9)} ${fmt(s.rssBytes).padStart(9)} ${String(s.fds).padStart(4)} ${String(s.jobs).padStart(5)}`,
      );
    }
    console.log(
      `soak: ${counts.submitted} jobs from ${CLIENTS} clients in ${Math.round((Date.now() - t0) / 1000)} s, retention ${RETENTION}: ${counts.fresh} with inputs of their own, ${counts.fetched} fetched, ${counts.deleted} deleted, ${counts.cancelled} cancelled, ${counts.leftForRetention} left for retention\n${lines.join("\n")}`,
    );

    expect(counts.mismatches).toBe(0);
    expect(samples.length).toBeGreaterThanOrEqual(9);
    const checks = {
      dataBytes: plateau(samples, "dataBytes", 16 * MiB),
      blobFiles: plateau(samples, "blobFiles", 32),
      journalBytes: plateau(samples, "journalBytes", 8 * MiB),
      rssBytes: plateau(samples, "rssBytes", 64 * MiB),
      fds: plateau(samples, "fds", 16),
      jobs: plateau(samples, "jobs", 50),
    };
    console.log(`soak plateaus (peak of middle third → last third): ${JSON.stringify(checks)}`);
    for (const [name, c] of Object.entries(checks)) expect(c.ok, `${name} keeps growing: ${c.middle} → ${c.last}`).toBe(true);
  });
});
