import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statfsSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, encodeNpy } from "@dce/client-sdk";
import { BlobService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { BIN, type Cluster, naiveMultiply, randomMatrix, sameBytes, spawnNode, startCluster } from "../support/cluster.js";

// Real processes on a real full disk: the coordinator's --data-dir is a 16 MiB tmpfs.
// Each write path meets ENOSPC for real: an upload (refused up front, and a chunk that
// the disk refuses mid-upload), the tiles of a running job, and the journal. Callers get
// RESOURCE_EXHAUSTED naming the data dir; once space is freed the coordinator serves
// again and every earlier job's result is byte-identical. Needs root to mount (as CI
// runs); elsewhere each test is skipped with the reason. The same paths with injected
// faults, everywhere: packages/coordinator/src/*-disk.test.ts.

const root = mkdtempSync(join(tmpdir(), "dce-disk-full-"));
const mnt = join(root, "mnt");
let mounted = false;
let mountError = "";

beforeAll(() => {
  execFileSync("mkdir", ["-p", mnt]);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", mnt], { stdio: "pipe" });
    mounted = true;
  } catch (e) {
    mountError = String((e as { stderr?: Buffer }).stderr ?? e).trim();
    console.warn(`disk-full.test.ts is skipped: cannot mount a tmpfs (${mountError}); run as root to cover it`);
  }
});

afterAll(() => {
  // Every process on the mount is stopped by its test (cluster.close) before this runs.
  if (mounted) {
    try {
      execFileSync("umount", [mnt], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", mnt], { stdio: "pipe" });
    }
  }
  rmSync(root, { recursive: true, force: true });
});

const FILLER = () => join(mnt, "filler");

/** Fills the file system to the last byte with a file of its own. */
function fillDisk(): void {
  const fd = openSync(FILLER(), "a");
  try {
    for (const size of [1 << 20, 64 << 10, 4096, 1]) {
      const buf = Buffer.alloc(size, 1);
      for (;;) {
        try {
          writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  expect(statfsSync(mnt).bavail).toBe(0);
}

const freeDisk = () => rmSync(FILLER(), { force: true });

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

const until = async (what: string, pred: () => Promise<boolean>, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe("a full data dir (tmpfs)", () => {
  test("upload, tile and journal meet ENOSPC: RESOURCE_EXHAUSTED naming the data dir, nothing acknowledged is lost, and freeing space recovers", async (ctx) => {
    if (!mounted) ctx.skip(`cannot mount a tmpfs here (${mountError}); run as root to cover the real disk-full paths`);
    const dataDir = join(mnt, "data");
    // The real ENOSPC paths are under test: no watermark above the journal's reserve.
    const cluster: Cluster = await startCluster({
      workers: 0,
      leaseTtlMs: 2_000,
      dataDir,
      extraCoordinatorArgs: ["--min-free-bytes", "0"],
    });
    onTestFinished(() => cluster.close());
    const client = createClient({ ...cluster.clientOptions, timeoutMs: 60_000 });

    // An earlier job, finished before the disk fills.
    const a1 = randomMatrix(256, 256, 1);
    const b1 = randomMatrix(256, 256, 2);
    const job1 = await client.submitMatMul(a1, b1, { tileSize: 128, kernel: "reference" });
    const first = [await cluster.addWorker("w1"), await cluster.addWorker("w2")];
    const c1 = await job1.result();
    expect(sameBytes(c1.data, naiveMultiply(a1, b1))).toBe(true);
    // The next job is submitted while no worker runs, so its tiles arrive after the disk is full.
    for (const w of first) w.child.kill("SIGKILL");
    await Promise.all(first.map((w) => w.exited));

    // Upload, refused up front: the dce bin prints the code and message and exits 1.
    fillDisk();
    const npyDir = join(root, "npy");
    execFileSync("mkdir", ["-p", npyDir]);
    // 2 MiB each: over the size sent inline, so they are uploaded.
    writeFileSync(join(npyDir, "a.npy"), encodeNpy(randomMatrix(512, 512, 3)));
    writeFileSync(join(npyDir, "b.npy"), encodeNpy(randomMatrix(512, 512, 4)));
    const dce = spawnNode("dce", BIN.dce, ["submit", join(npyDir, "a.npy"), join(npyDir, "b.npy"), "--no-wait"], {
      DCE_COORDINATOR: cluster.url,
      DCE_CA: cluster.caPath,
      DCE_TOKEN: cluster.token,
    });
    onTestFinished(() => {
      if (dce.child.exitCode === null && dce.child.signalCode === null) dce.child.kill("SIGKILL");
    });
    expect(await dce.exited).toBe(1);
    expect(dce.stdout).toBe("");
    expect(dce.stderr).toMatch(
      new RegExp(
        `^error: resource_exhausted: data dir ${dataDir} has 0 B free \\(of 16\\.0 MiB\\), .*: an upload of 2097152 bytes \\(2\\.0 MiB\\) would leave less than --min-free-bytes 4\\.0 MiB`,
      ),
    );

    // Upload, a chunk the disk refuses mid-upload: the upload and its file are gone.
    freeDisk();
    const blobs = cluster.raw(BlobService);
    const bytes = new Uint8Array(2 << 20).fill(9);
    const begun = await blobs.beginUpload({ sizeBytes: BigInt(bytes.byteLength), sha256: "e".repeat(64) });
    fillDisk();
    const chunk = await failure(blobs.uploadChunk({ uploadId: begun.uploadId, offset: 0n, data: bytes.subarray(0, 1 << 20) }));
    expect(chunk.code).toBe(Code.ResourceExhausted);
    expect(chunk.rawMessage).toContain(`data dir ${dataDir} is full (ENOSPC) while writing upload ${begun.uploadId}`);
    expect(readdirSync(join(dataDir, "uploads"))).toEqual([]);

    // Tiles: a job acknowledged before the disk filled waits (not failed) while workers retry.
    freeDisk();
    const a2 = randomMatrix(256, 256, 5);
    const b2 = randomMatrix(256, 256, 6);
    const job2 = await client.submitMatMul(a2, b2, { tileSize: 128, kernel: "reference" });
    fillDisk();
    const w3 = await cluster.addWorker("w3");
    await until("a refused tile", async () => /"code":"ResourceExhausted"/.test(w3.stderr));
    expect(w3.stderr).toContain(`data dir ${dataDir} is full (ENOSPC) while writing tiles of job ${job2.id}`);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await job2.status()).toMatchObject({ state: "running", shardsDone: 0 });
    w3.child.kill("SIGKILL");
    await w3.exited;
    freeDisk();
    const w4 = await cluster.addWorker("w4");
    const c2 = await job2.result();
    expect(sameBytes(c2.data, naiveMultiply(a2, b2))).toBe(true);
    w4.child.kill("SIGKILL");
    await w4.exited;

    // Journal: cancels of queued jobs (no worker runs) until a commit needs a new page.
    const tiny = randomMatrix(4, 4, 7);
    const queued = [];
    for (let i = 0; i < 40; i++) queued.push(await client.submitMatMul(tiny, tiny, { tileSize: 4, kernel: "reference" }));
    fillDisk();
    const cancelled: string[] = [];
    let refused: ConnectError | undefined;
    let refusedId = "";
    for (const job of queued) {
      try {
        await job.cancel({ reason: "disk test" });
        cancelled.push(job.id);
      } catch (e) {
        refused = ConnectError.from(e);
        refusedId = job.id;
        break;
      }
    }
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toMatch(
      new RegExp(
        `^data dir ${dataDir} is full \\(ENOSPC\\) while writing the journal \\(wal-\\d+\\.log\\), so nothing of this request was saved and the coordinator restarts`,
      ),
    );
    expect(await cluster.coordinator.exited).toBe(70);

    // Space is freed and the coordinator started again: everything acknowledged is there.
    freeDisk();
    await cluster.restartCoordinator();
    expect(sameBytes((await job1.result()).data, c1.data)).toBe(true);
    expect(sameBytes((await job2.result()).data, c2.data)).toBe(true);
    for (const id of cancelled) expect((await client.getJobHandle(id).status()).state).toBe("cancelled");
    expect((await client.getJobHandle(refusedId).status()).state).toBe("queued");
    await cluster.addWorker("w5");
    const a3 = randomMatrix(64, 64, 8);
    const job3 = await client.submitMatMul(a3, a3, { kernel: "reference" });
    expect(sameBytes((await job3.result()).data, naiveMultiply(a3, a3))).toBe(true);
  });
});
