import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@dce/client-sdk";
import { BlobService, ErrorReason } from "@dce/proto";
import { errorReasonOf } from "@dce/runtime/error-info";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// A client fills the coordinator's data dir (a 96 MiB tmpfs, --min-free-bytes 32MiB)
// with uploads through the bins, as a user would: it is refused with RESOURCE_EXHAUSTED
// while the disk still has the watermark free, submits are refused too, and a job
// submitted before still runs to its exact result on that space. Needs root to mount
// (as CI runs); elsewhere it is skipped with the reason.

const root = mkdtempSync(join(tmpdir(), "dce-watermark-"));
const mnt = join(root, "mnt");
let mounted = false;
let mountError = "";

beforeAll(() => {
  execFileSync("mkdir", ["-p", mnt]);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", mnt], { stdio: "pipe" });
    mounted = true;
  } catch (e) {
    mountError = String((e as { stderr?: Buffer }).stderr ?? e).trim();
  }
});

afterAll(() => {
  if (mounted) {
    try {
      execFileSync("umount", [mnt], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", mnt], { stdio: "pipe" });
    }
  }
  rmSync(root, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

describe("the --min-free-bytes watermark on a real disk", () => {
  test("a client filling the data dir is refused before it is full, and a running job still finishes", async (ctx) => {
    if (!mounted) ctx.skip(`cannot mount a tmpfs here (${mountError}); run as root to cover it`);
    const dataDir = join(mnt, "data");
    const cluster = await startCluster({
      workers: 0,
      leaseTtlMs: 2_000,
      dataDir,
      extraCoordinatorArgs: ["--min-free-bytes", "32MiB"],
    });
    onTestFinished(() => cluster.close());
    const client = createClient({ ...cluster.clientOptions, timeoutMs: 60_000 });
    // Submitted before the disk fills; no worker yet, so it runs after.
    const a = randomMatrix(512, 256, 1);
    const b = randomMatrix(256, 512, 2);
    const job = await client.submitMatMul(a, b, { tileSize: 128, kernel: "reference" });

    const blobs = cluster.raw(BlobService);
    const CHUNK = 1 << 20;
    /** Uploads random bytes; the refusal, if any. */
    const upload = async (size: number): Promise<ConnectError | undefined> => {
      const data = randomBytes(size);
      const sha256 = createHash("sha256").update(data).digest("hex");
      try {
        const up = await blobs.beginUpload({ sizeBytes: BigInt(size), sha256 });
        for (let off = 0; off < size; off += CHUNK) {
          await blobs.uploadChunk({ uploadId: up.uploadId, offset: BigInt(off), data: data.subarray(off, off + CHUNK) });
        }
        await blobs.finishUpload({ uploadId: up.uploadId });
        return undefined;
      } catch (e) {
        return ConnectError.from(e);
      }
    };
    // Fill in smaller and smaller uploads, each size until it is refused.
    let first: ConnectError | undefined;
    let stored = 0;
    for (const size of [4 << 20, 1 << 20, 256 << 10]) {
      for (let i = 0; i < 40; i++) {
        const refused = await upload(size);
        if (refused === undefined) {
          stored++;
          continue;
        }
        first ??= refused;
        break;
      }
    }
    expect(first?.code).toBe(Code.ResourceExhausted);
    expect(errorReasonOf(first)).toBe(ErrorReason.DATA_DIR_FULL);
    expect(first?.rawMessage).toMatch(new RegExp(`^data dir ${dataDir} has \\d+\\.\\d MiB free \\(of 96\\.0 MiB\\)`));
    expect(first?.rawMessage).toContain("would leave less than --min-free-bytes 32.0 MiB");
    expect(stored).toBeGreaterThan(5);
    // Refused with the watermark still free: nowhere near a full disk.
    const s = statfsSync(mnt);
    expect(s.bavail * s.bsize).toBeGreaterThan(28 << 20);

    // A new job (its inputs already stored; its 2 MiB C would not fit above the watermark).
    const sub = await failure(client.submitMatMul(a, b, { tileSize: 128, kernel: "reference", idempotencyKey: "again" }));
    expect(sub.code).toBe(Code.ResourceExhausted);
    expect(errorReasonOf(sub)).toBe(ErrorReason.DATA_DIR_FULL);
    expect(sub.rawMessage).toContain(`data dir ${dataDir} has`);

    // The job accepted before runs to its exact result on the space kept below the watermark.
    await cluster.addWorker("w1");
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
  });
});
