import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason, type LeaseRef, type ShardOutcome, ShardOutcomeSchema } from "@dce/proto";
import { stagedTilePath } from "@dce/runtime/blob-layout";
import type { BlobTransfer } from "@dce/runtime/blob-transfer";
import { afterEach, describe, expect, it } from "vitest";
import type { ShardResultInit, ShardRun } from "../pull/shard.js";
import type { Session } from "../session/session.js";
import { captureLogger } from "../test-support/worker-fixtures.js";
import { CompletionReporter } from "./completion.js";
import type { ReportBatcher } from "./report-batcher.js";
import { STAGE_MIN_BYTES, STAGING_PAUSE_MS, TileStager } from "./tile-stager.js";

// The worker's side of staged tiles: what it writes into the local store's staging folder,
// what it reports, and how it falls back so that no result is lost.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A store folder with its staging folder, as the coordinator makes it. */
function storeDir(withStaging = true): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-stage-"));
  dirs.push(dir);
  if (withStaging) mkdirSync(join(dir, "staging"));
  return dir;
}

/** A reporter whose coordinator answers each report with `answer` (default OK), recording what it was sent. */
function reporterFor(dir: string, opts: { accepts?: boolean; answer?: (r: ShardResultInit) => ShardOutcome | undefined } = {}) {
  const sent: ShardResultInit[] = [];
  const log = captureLogger();
  const session = {
    localStore: { dir, storeId: "s", blobPath: () => "" },
    acceptsStagedTiles: opts.accepts ?? true,
    chunkLimitBytes: () => 4 * 1024 * 1024,
  } as unknown as Session;
  const batcher = {
    report: async (_run: ShardRun, r: ShardResultInit) => {
      // The file as the coordinator would find it at this moment.
      sent.push(r);
      return opts.answer?.(r) ?? create(ShardOutcomeSchema, { lease: r.lease, code: 0 });
    },
  } as unknown as ReportBatcher;
  const reporter = new CompletionReporter({
    session,
    batcher,
    transfer: {} as BlobTransfer,
    rpcTimeoutMs: 1_000,
    random: () => 0.5,
    log,
    isFatal: () => false,
  });
  return { reporter, sent, log };
}

let epoch = 1n;
function runOf(): ShardRun {
  const lease: LeaseRef = { $typeName: "dce.v1.LeaseRef", jobId: "job-1", shardIndex: 3, epoch: epoch++ };
  return {
    key: `job-1/3/${lease.epoch}`,
    lease,
    shard: {} as ShardRun["shard"],
    abort: new AbortController(),
    phase: "completing",
    expiresAtMs: Date.now() + 60_000,
    done: Promise.resolve(),
  };
}

const tileOf = (values: number, seed: number) => Float64Array.from({ length: values }, (_, i) => i * 0.25 + seed);
const big = STAGE_MIN_BYTES / 8;

describe("staged result tiles (worker)", () => {
  it("writes a tile of at least 64 KiB into its lease's staging file, exactly its bytes, and reports it as staged", async () => {
    const dir = storeDir();
    const files: (Buffer | undefined)[] = [];
    const { reporter, sent } = reporterFor(dir, {
      answer: (r) => {
        files.push(readFileSync(stagedTilePath(dir, r.lease) ?? ""));
        return undefined;
      },
    });
    const run = runOf();
    const c = tileOf(big, 1);
    await reporter.complete(run, c, 1, 1);
    expect(sent.map((r) => r.payload.case)).toEqual(["staged"]);
    expect(sent[0]?.payload.value).toMatchObject({ sizeBytes: BigInt(c.byteLength) });
    expect(files[0]?.equals(Buffer.from(c.buffer))).toBe(true);
  });

  it("sends a tile under 64 KiB inline, and every tile inline when the coordinator does not take staged tiles", async () => {
    const dir = storeDir();
    const small = reporterFor(dir);
    await small.reporter.complete(runOf(), tileOf(big - 1, 2), 1, 1);
    const off = reporterFor(dir, { accepts: false });
    await off.reporter.complete(runOf(), tileOf(big, 3), 1, 1);
    expect([...small.sent, ...off.sent].map((r) => r.payload.case)).toEqual(["data", "data"]);
  });

  it("sends the tile inline when the coordinator did not find its staged file (STAGED_TILE_NOT_FOUND)", async () => {
    const dir = storeDir();
    const { reporter, sent, log } = reporterFor(dir, {
      answer: (r) =>
        r.payload.case === "staged"
          ? create(ShardOutcomeSchema, {
              lease: r.lease,
              code: Code.NotFound,
              message: "staged tile not found (ENOENT)",
              error: create(ErrorInfoSchema, { reason: ErrorReason.STAGED_TILE_NOT_FOUND }),
            })
          : undefined,
    });
    const c = tileOf(big, 4);
    await reporter.complete(runOf(), c, 1, 1);
    expect(sent.map((r) => r.payload.case)).toEqual(["staged", "data"]);
    expect(sent[1]?.payload.value).toEqual(new Uint8Array(c.buffer));
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("sends tiles inline when the staging write fails, logging it once at info, and tries again only after a pause", async () => {
    const dir = storeDir(false);
    writeFileSync(join(dir, "staging"), ""); // not a folder: every write fails (ENOTDIR)
    const { reporter, sent, log } = reporterFor(dir);
    const runs = [runOf(), runOf(), runOf()];
    for (const [i, run] of runs.entries()) await reporter.complete(run, tileOf(big, 10 + i), 1, 1);
    expect(sent.map((r) => r.payload.case)).toEqual(["data", "data", "data"]);
    const lines = log.lines.filter((l) => l.msg.startsWith("could not stage a result tile"));
    expect(lines.map((l) => l.level)).toEqual(["info"]); // later tiles: staging paused, not retried
    expect(lines[0]?.fields.err).toMatch(/ENOTDIR/);
  });

  it("stages again once the pause after a failed write is over; only the first failure is logged at info", async () => {
    const dir = storeDir(false);
    writeFileSync(join(dir, "staging"), "");
    let now = 1_000_000;
    const session = { localStore: { dir }, acceptsStagedTiles: true } as unknown as Session;
    const log = captureLogger();
    const stager = new TileStager({ session, log, nowMs: () => now });
    const tile = new Uint8Array(Float64Array.from(tileOf(big, 30)).buffer);
    expect(await stager.stage(runOf().lease, tile)).toBe(false);
    now += STAGING_PAUSE_MS;
    expect(await stager.stage(runOf().lease, tile)).toBe(false); // tried again: still failing
    expect(log.lines.map((l) => l.level)).toEqual(["info", "debug"]);
    rmSync(join(dir, "staging"));
    mkdirSync(join(dir, "staging")); // the disk is usable again
    now += STAGING_PAUSE_MS - 1;
    expect(await stager.stage(runOf().lease, tile)).toBe(false); // still paused
    now += 1;
    const run = runOf();
    expect(await stager.stage(run.lease, tile)).toBe(true);
    expect(readFileSync(stagedTilePath(dir, run.lease) ?? "").equals(Buffer.from(tile))).toBe(true);
  });
});
