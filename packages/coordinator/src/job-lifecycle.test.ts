import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { ErrorReason, JobService, JobState, LeaseState, WorkerService } from "@dce/proto";
import { errorInfoOf } from "@dce/runtime/error-info";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Role } from "./access.js";
import { principalKey } from "./auth.js";
import { Coordinator } from "./coordinator.js";
import { VirtualClock } from "./ports/virtual-clock.js";
import { resolveConfig } from "./server.js";
import { submitInline, tileOf } from "./test-support/inline-jobs.js";

// Deleting, expiring and listing jobs through the JobService of a coordinator on disk,
// on a virtual clock: what a client sees, what a worker's late report gets, and what a
// restart brings back (nothing that was deleted).

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Test-only: the caller named in `x-test-client` (with `x-test-admin: 1` for an admin), as the token check would set it. */
const principalFromHeader: Interceptor = (next) => (req) => {
  const clientId = req.header.get("x-test-client");
  if (clientId !== null) {
    const roles = new Set<Role>(req.header.get("x-test-admin") === "1" ? ["admin"] : ["client"]);
    req.contextValues.set(principalKey, { roles, clientId });
  }
  return next(req);
};

const HOUR = 3_600_000;

async function start(opts: { dataDir?: string; retentionMs?: number; clock?: VirtualClock } = {}) {
  const dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "dce-lifecycle-"));
  if (opts.dataDir === undefined) cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const clock = opts.clock ?? new VirtualClock(1_700_000_000_000);
  const config = resolveConfig({ dataDir: dir, verify: false, fsync: false, retentionMs: opts.retentionMs ?? HOUR });
  const c = await Coordinator.open(config, pino({ level: "silent" }), { clock });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await c.close();
  };
  cleanups.push(close);
  const t = createRouterTransport((r) => c.routes(r), { router: { interceptors: [principalFromHeader] } });
  const as = (client: string, admin = false) => ({
    headers: { "x-test-client": client, ...(admin ? { "x-test-admin": "1" } : {}) },
  });
  /** A JobService client that calls as `client`. */
  const jobsAs = (client: string) => {
    const named: Interceptor = (next) => (req) => {
      req.header.set("x-test-client", client);
      return next(req);
    };
    return createClient(
      JobService,
      createRouterTransport((r) => c.routes(r), {
        router: { interceptors: [principalFromHeader] },
        transport: { interceptors: [named] },
      }),
    );
  };
  return {
    dir,
    clock,
    coordinator: c,
    close,
    jobs: createClient(JobService, t),
    workers: createClient(WorkerService, t),
    as,
    jobsAs,
  };
}
type Started = Awaited<ReturnType<typeof start>>;

/** Runs one 2×2 job of `client` to success with one worker. */
async function runJob(s: Started, client: string, retentionMs = 0) {
  const submitted = await submitInline(s.jobsAs(client), { m: 2, k: 2, n: 2, tile: 2 }, "", retentionMs);
  const { workerId } = await s.workers.registerWorker({
    name: "w",
    kernels: [{ name: "reference", fingerprint: "t/1" }],
    threads: 1,
  });
  const { leases } = await s.workers.acquireShards({ workerId, maxShards: 8, waitMs: 0 });
  await s.workers.completeShards({
    workerId,
    results: leases.map((l) => ({
      lease: l.lease,
      payload: { case: "data" as const, value: tileOf(l, submitted) },
      computeMs: 1,
    })),
  });
  s.clock.advance(0); // the seal runs on a 0 ms timer
  await settle();
  const status = await s.jobs.getJob({ jobId: submitted.jobId }, s.as(client));
  expect(status.status?.state).toBe(JobState.SUCCEEDED);
  return submitted.jobId;
}

/** Lets pending commits and timers run. */
const settle = () => new Promise((r) => setTimeout(r, 20));

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}

describe("DeleteJob", () => {
  it("a deleted job answers NOT_FOUND everywhere, also after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-lifecycle-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const s = await start({ dataDir: dir });
    const jobId = await runJob(s, "alice");
    const kept = await runJob(s, "alice");
    await s.jobs.deleteJob({ jobId }, s.as("alice"));
    const calls = [
      () => s.jobs.getJob({ jobId }, s.as("alice")),
      () => s.jobs.getResult({ jobId }, s.as("alice")),
      () => s.jobs.cancelJob({ jobId }, s.as("alice")),
      () => s.jobs.deleteJob({ jobId }, s.as("alice")),
    ];
    for (const call of calls) {
      const e = await failure(call());
      expect(e.code).toBe(Code.NotFound);
      expect(errorInfoOf(e)?.reason).toBe(ErrorReason.JOB_NOT_FOUND);
    }
    const listed = await s.jobs.listJobs({}, s.as("alice"));
    expect(listed.jobs.map((j) => j.jobId)).toEqual([kept]);
    await s.close();

    const again = await start({ dataDir: dir });
    expect((await failure(again.jobs.getJob({ jobId }, again.as("alice")))).code).toBe(Code.NotFound);
    expect((await again.jobs.getJob({ jobId: kept }, again.as("alice"))).status?.state).toBe(JobState.SUCCEEDED);
    // The journal still names it (until a snapshot), but only with its deletion after it.
    const wal = readdirSync(join(dir, "journal")).filter((f) => f.startsWith("wal-"));
    const text = wal.map((f) => readFileSync(join(dir, "journal", f), "latin1")).join("");
    expect(text).toContain('"type":"job-deleted"');
  });

  it("cancels and deletes a running job: a long-poll on it ends NOT_FOUND, the worker's late report is refused", async () => {
    const s = await start();
    const job = await submitInline(s.jobsAs("alice"), {
      m: 4,
      k: 2,
      n: 4,
      tile: 2,
    });
    const { workerId } = await s.workers.registerWorker({
      name: "w",
      kernels: [{ name: "reference", fingerprint: "t/1" }],
      threads: 1,
    });
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
    expect(leases).toHaveLength(1);
    const poll = failure(s.jobs.getJob({ jobId: job.jobId, waitMs: 30_000, untilTerminal: true }, s.as("alice")));
    await settle();
    await s.jobs.deleteJob({ jobId: job.jobId }, s.as("alice"));
    const ended = await poll;
    expect(ended.code).toBe(Code.NotFound);
    const lease = leases[0];
    if (!lease?.lease) throw new Error("no lease");
    const late = await s.workers.completeShards({
      workerId,
      results: [{ lease: lease.lease, payload: { case: "data" as const, value: tileOf(lease, job) }, computeMs: 1 }],
    });
    // NOT_FOUND: the job is unknown, as for any job that never existed.
    expect(late.outcomes.map((o) => [o.code, o.error?.reason])).toEqual([[Code.NotFound, ErrorReason.JOB_NOT_FOUND]]);
    const beat = await s.workers.heartbeat({ workerId, leases: [lease.lease] });
    expect(beat.leases.map((l) => l.state)).toEqual([LeaseState.LOST]);
  });

  it("another client's job is NOT_FOUND to get and delete, absent from its list; an admin may delete it", async () => {
    const s = await start();
    const jobId = await runJob(s, "alice");
    for (const call of [s.jobs.getJob({ jobId }, s.as("bob")), s.jobs.deleteJob({ jobId }, s.as("bob"))]) {
      expect((await failure(call)).code).toBe(Code.NotFound);
    }
    expect((await s.jobs.listJobs({}, s.as("bob"))).jobs).toEqual([]);
    const all = await s.jobs.listJobs({}, s.as("root", true));
    expect(all.jobs.map((j) => [j.jobId, j.owner])).toEqual([[jobId, "alice"]]);
    await s.jobs.deleteJob({ jobId }, s.as("root", true));
    expect((await failure(s.jobs.getJob({ jobId }, s.as("alice")))).code).toBe(Code.NotFound);
  });
});

describe("retention", () => {
  it("a job kept for 1 s is deleted by the tick after it, and its status said when", async () => {
    const s = await start();
    const jobId = await runJob(s, "alice", 1_000);
    const status = (await s.jobs.getJob({ jobId }, s.as("alice"))).status;
    expect(status?.expiresAtMs).toBe((status?.finishedAtMs ?? 0n) + 1_000n);
    expect(status?.owner).toBe("alice");
    s.clock.advance(999);
    await settle();
    expect((await s.jobs.getJob({ jobId }, s.as("alice"))).status?.state).toBe(JobState.SUCCEEDED);
    s.clock.advance(300); // past the expiry, and at least one tick
    await settle();
    expect((await failure(s.jobs.getJob({ jobId }, s.as("alice")))).code).toBe(Code.NotFound);
  });

  it("a retention above the maximum is INVALID_ARGUMENT naming the maximum", async () => {
    const s = await start();
    const e = await failure(submitInline(s.jobsAs("alice"), { m: 2, k: 2, n: 2, tile: 2 }, "", 31 * 24 * HOUR));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toContain(String(30 * 24 * HOUR));
    // In the units `dce submit --retention` and `coordinator --max-retention` take.
    expect(e.rawMessage).toContain("(31d) is above");
    expect(e.rawMessage).toContain("(30d, --max-retention)");
    expect(errorInfoOf(e)?.metadata.max_retention_ms).toBe(String(30 * 24 * HOUR));
  });
});

describe("ListJobs", () => {
  it("pages newest first with stable tokens while jobs are submitted between pages", async () => {
    const s = await start();
    const ids: string[] = [];
    const submit = async () => {
      const j = await submitInline(s.jobsAs("alice"), {
        m: 1,
        k: 1,
        n: 1,
        tile: 1,
      });
      s.clock.advance(1);
      return j.jobId;
    };
    for (let i = 0; i < 7; i++) ids.push(await submit());
    const seen: string[] = [];
    let token = "";
    for (let page = 0; page < 10; page++) {
      const res = await s.jobs.listJobs({ pageSize: 3, pageToken: token }, s.as("alice"));
      seen.push(...res.jobs.map((j) => j.jobId));
      await submit(); // newer than every page: never shows up in this walk
      token = res.nextPageToken;
      if (token === "") break;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it("filters by state; page_size 0 is 50, above 1000 is 1000, negative and foreign tokens are INVALID_ARGUMENT", async () => {
    const s = await start();
    await runJob(s, "alice");
    const queued = await submitInline(s.jobsAs("alice"), {
      m: 2,
      k: 2,
      n: 2,
      tile: 1,
    });
    const onlyQueued = await s.jobs.listJobs({ states: [JobState.QUEUED] }, s.as("alice"));
    expect(onlyQueued.jobs.map((j) => j.jobId)).toEqual([queued.jobId]);
    for (let i = 0; i < 55; i++) {
      await submitInline(s.jobsAs("carol"), { m: 1, k: 1, n: 1, tile: 1 });
    }
    expect((await s.jobs.listJobs({ pageSize: 0 }, s.as("carol"))).jobs).toHaveLength(50);
    expect((await s.jobs.listJobs({ pageSize: 5000 }, s.as("carol"))).jobs).toHaveLength(55);
    expect((await failure(s.jobs.listJobs({ pageSize: -1 }, s.as("carol")))).code).toBe(Code.InvalidArgument);
    const carols = await s.jobs.listJobs({ pageSize: 2 }, s.as("carol"));
    for (const [token, who, states] of [
      ["garbage!", "carol", []],
      ["eyJ2IjoxfQ", "carol", []],
      [carols.nextPageToken, "alice", []], // another caller's token
      [carols.nextPageToken, "carol", [JobState.QUEUED]], // another listing's token
    ] as const) {
      const e = await failure(s.jobs.listJobs({ pageToken: token, states: [...states] }, s.as(who)));
      expect(e.code).toBe(Code.InvalidArgument);
      expect(errorInfoOf(e)?.reason).toBe(ErrorReason.MALFORMED_REQUEST);
    }
    expect((await failure(s.jobs.listJobs({ states: [JobState.UNSPECIFIED] }, s.as("carol")))).code).toBe(Code.InvalidArgument);
  });
});
