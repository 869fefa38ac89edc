import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JobService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type RunningCoordinator, startCoordinator } from "./server.js";
import { faults } from "./test-support/disk-faults.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// An embedded coordinator (startCoordinator without onFatal) whose journal cannot be
// written stops serving: nobody is answered from a memory ahead of its disk. The bin
// exits 70 instead (cli.ts; test/integration/disk-full.test.ts).

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  faults.clear();
  for (const c of cleanups.splice(0).reverse()) await c();
});

const job = (key: string) => ({
  idempotencyKey: key,
  matmul: {
    a: { rows: 1, cols: 1, inlineData: new Uint8Array(new Float64Array([2]).buffer) },
    b: { rows: 1, cols: 1, inlineData: new Uint8Array(new Float64Array([3]).buffer) },
    tileRows: 1,
    tileCols: 1,
    kernel: "reference",
  },
});

describe("startCoordinator without onFatal", () => {
  it("stops serving once the journal cannot be written", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "dce-server-fatal-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const running: RunningCoordinator = await startCoordinator({
      host: "127.0.0.1",
      port: 0,
      insecure: true,
      devNoAuth: true,
      dataDir,
      verify: false,
      logger: pino({ level: "silent" }),
    });
    cleanups.push(() => running.close().catch(() => {}));
    const jobs = createClient(JobService, createGrpcTransport({ baseUrl: running.url }));
    await jobs.submitJob(job("kept"));

    faults.arm({ op: "write", path: /journal\/wal-/, code: "ENOSPC" });
    const lost = await jobs.submitJob(job("lost")).catch((e: unknown) => ConnectError.from(e));
    expect(lost).toBeInstanceOf(ConnectError);
    expect((lost as ConnectError).code).toBe(Code.ResourceExhausted);

    // It closes by itself: new calls find nobody listening.
    await vi.waitFor(
      async () => {
        const e = await jobs.getJob({ jobId: "x" }, { timeoutMs: 1_000 }).catch((err: unknown) => ConnectError.from(err));
        expect((e as ConnectError).code).toBe(Code.Unavailable);
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});
