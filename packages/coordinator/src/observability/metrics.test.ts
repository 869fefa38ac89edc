import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { openScenario, type Scenario, type ScenarioOptions } from "../test-support/scenario.js";
import { registerHealthService } from "./health.js";
import { type CoordinatorMetrics, codeLabel, createCoordinatorMetrics, rejectionReason } from "./metrics.js";

const opened: Scenario[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

/** The real coordinator in memory on a virtual clock, driven one call at a time; closed after the test. */
async function scenario(o: ScenarioOptions = {}): Promise<Scenario> {
  const sc = await openScenario(o);
  opened.push(sc);
  return sc;
}

/** The value of one series, or undefined when it does not exist. */
async function value(m: CoordinatorMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const got = await metric.get();
  const hit = got.values.find((v) =>
    Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want),
  );
  return hit?.value;
}

async function setup() {
  const sc = await scenario();
  const metrics = createCoordinatorMetrics({ processMetrics: false });
  const detach = metrics.attach(sc.coordinator);
  return { sc, metrics, detach };
}

describe("metrics derived from core steps", () => {
  it("counts verification outcomes, rejected results, quarantined workers and identities; every lease end is accounted for", async () => {
    const sc = await scenario({ core: { quarantineAfterRejections: 2 }, verify: true });
    const metrics = createCoordinatorMetrics({ processMetrics: false });
    metrics.attach(sc.coordinator);
    await sc.submit(8, 4, 8, 2); // 16 shards
    const bad = await sc.register("bad", 4, "mallory");
    const good = await sc.register("good", 1, "alice");
    const [g1, g2, g3] = await sc.acquire(bad, 3);
    if (!g1 || !g2 || !g3) throw new Error("expected three grants");
    // Verification is on: the coordinator checks each result and reports every check.
    expect((await sc.reject(bad, g1)).ok).toBe(true);
    expect((await sc.reject(bad, g2)).ok).toBe(true); // the second: quarantined, g3 taken back
    const [g4] = await sc.acquire(good, 1);
    if (!g4) throw new Error("expected a grant");
    expect((await sc.complete(good, g4)).ok).toBe(true);
    expect(await value(metrics, "dce_shard_verifications_total", { outcome: "rejected" })).toBe(2);
    expect(await value(metrics, "dce_shard_verifications_total", { outcome: "passed" })).toBe(1);
    expect(await value(metrics, "dce_shard_verifications_total", { outcome: "error" })).toBe(0);
    expect(await value(metrics, "dce_shard_completions_rejected_total", { reason: "corrupt" })).toBe(2);
    expect(await value(metrics, "dce_workers_quarantined")).toBe(1);
    expect(await value(metrics, "dce_worker_identities_quarantined")).toBe(0);
    expect(await value(metrics, "dce_worker_rejected_results", { identity: "mallory", quarantined: "false" })).toBe(2);
    const histogram = await metrics.registry.getSingleMetric("dce_shard_verification_seconds")?.get();
    const count = histogram?.values.find(
      (v) => (v as { metricName?: string }).metricName === "dce_shard_verification_seconds_count",
    );
    expect(count?.value).toBe(3);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "failed" })).toBe(2);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "released" })).toBe(1);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "completed" })).toBe(1);
    expect(await value(metrics, "dce_leases_granted_total")).toBe(4);
    expect(await value(metrics, "dce_leases_active")).toBe(0);
    // A second worker of the same identity returns a wrong result: now the identity is quarantined.
    const again = await sc.register("bad-again", 1, "mallory");
    const [g5] = await sc.acquire(again, 1);
    if (!g5) throw new Error("expected a grant");
    expect((await sc.reject(again, g5)).ok).toBe(true);
    expect(await value(metrics, "dce_workers_quarantined")).toBe(1);
    expect(await value(metrics, "dce_worker_identities_quarantined")).toBe(1);
    expect(await value(metrics, "dce_worker_rejected_results", { identity: "mallory", quarantined: "true" })).toBe(3);
  });

  it("counts a job from submit to success, per worker", async () => {
    const { sc, metrics } = await setup();
    const job = await sc.submit(8, 4, 8, 4); // 2 x 2 = 4 shards
    const w1 = await sc.register("w1");
    const w2 = await sc.register("w2");
    expect(await value(metrics, "dce_jobs", { state: "queued" })).toBe(1);
    // The job is spread: each worker takes its share, 2 of the 4 shards.
    const g1 = await sc.acquire(w1, 3);
    const g2 = await sc.acquire(w2, 3);
    expect(g1).toHaveLength(2);
    expect(g2).toHaveLength(2);
    expect(await value(metrics, "dce_shards", { state: "leased" })).toBe(4);
    expect(await value(metrics, "dce_leases_active")).toBe(4);
    for (const g of g1) expect((await sc.complete(w1, g)).ok).toBe(true);
    for (const g of g2) expect((await sc.complete(w2, g)).ok).toBe(true);
    await sc.finalize(job);

    expect(await value(metrics, "dce_jobs_submitted_total")).toBe(1);
    expect(await value(metrics, "dce_jobs_finished_total", { state: "succeeded" })).toBe(1);
    expect(await value(metrics, "dce_jobs", { state: "succeeded" })).toBe(1);
    expect(await value(metrics, "dce_jobs", { state: "running" })).toBe(0);
    expect(await value(metrics, "dce_leases_granted_total")).toBe(4);
    expect(await value(metrics, "dce_shards_completed_total")).toBe(4);
    expect(await value(metrics, "dce_shard_result_bytes_total")).toBe(8 * 8 * 8);
    expect(await value(metrics, "dce_worker_shards_completed_total", { worker_name: "w1" })).toBe(2);
    expect(await value(metrics, "dce_worker_shards_completed_total", { worker_name: "w2" })).toBe(2);
    expect(await value(metrics, "dce_workers")).toBe(2);
    expect(await value(metrics, "dce_worker_threads")).toBe(2);
    expect(await value(metrics, "dce_workers_registered_total")).toBe(2);
    expect(await value(metrics, "dce_shard_completions_rejected_total", { reason: "stale" })).toBe(0);
  });

  it("counts rejections by reason, expiries, retries, failures and hand-backs", async () => {
    const { sc, metrics } = await setup();
    await sc.submit(4, 4, 8, 4); // 2 shards
    const w = await sc.register("w");
    const [a, b] = await sc.acquire(w, 2);
    if (!a || !b) throw new Error("expected two grants");
    expect((await sc.complete(w, a)).ok).toBe(true);
    expect((await sc.complete(w, a)).ok).toBe(false); // the same report again: duplicate
    // b expires, is retried, and the late report of the old epoch is stale.
    expect(await sc.tick(1_500)).toBe(1);
    expect((await sc.complete(w, b)).ok).toBe(false);
    expect(await value(metrics, "dce_leases_expired_total")).toBe(1);
    expect(await value(metrics, "dce_shards_retried_total")).toBe(1);
    expect(await value(metrics, "dce_shard_completions_rejected_total", { reason: "duplicate" })).toBe(1);
    expect(await value(metrics, "dce_shard_completions_rejected_total", { reason: "stale" })).toBe(1);
    expect(await value(metrics, "dce_shards_awaiting_retry")).toBe(1);
    // The retry fails once (another retry), then is handed back unstarted (not a retry).
    await sc.tick(50);
    const [again] = await sc.acquire(w, 1);
    if (!again) throw new Error("expected the retry");
    expect((await sc.fail(w, again)).ok).toBe(true);
    await sc.tick(50);
    const [third] = await sc.acquire(w, 1);
    if (!third) throw new Error("expected another retry");
    expect((await sc.fail(w, third, true)).ok).toBe(true);
    expect(await value(metrics, "dce_shard_failures_total")).toBe(1);
    expect(await value(metrics, "dce_shards_released_total")).toBe(1);
    expect(await value(metrics, "dce_shards_retried_total")).toBe(2);
    expect(await value(metrics, "dce_leases_granted_total")).toBe(4);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "completed" })).toBe(1);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "expired" })).toBe(1);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "failed" })).toBe(1);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "released" })).toBe(1);
  });

  it("accounts for every lease: backups for stragglers, the losing twin superseded, revoked by a cancel", async () => {
    const { sc, metrics } = await setup();
    const job = await sc.submit(4, 4, 4, 2); // 4 shards
    const w1 = await sc.register("w1");
    const grants = await sc.acquire(w1, 4); // alone, w1 takes the whole job
    const w2 = await sc.register("w2");
    await sc.advance(100);
    for (const g of grants.slice(0, 3)) expect((await sc.complete(w1, g)).ok).toBe(true);
    // The last shard runs past 1.5 x the median (100 ms): it gets a backup on another worker, which wins.
    await sc.tick(100);
    const [backup] = await sc.acquire(w2, 1);
    if (!backup) throw new Error("expected a backup lease");
    expect(backup.lease.shardIndex).toBe(grants[3]?.lease.shardIndex);
    expect((await sc.complete(w2, backup)).ok).toBe(true);
    await sc.finalize(job);
    expect(await value(metrics, "dce_leases_backup_total")).toBe(1);
    expect(await value(metrics, "dce_leases_granted_total")).toBe(5);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "completed" })).toBe(4);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "superseded" })).toBe(1);
    // A cancelled job's live leases are revoked.
    const other = await sc.submit(4, 4, 4, 2);
    await sc.acquire(w1, 3); // its share of 4 shards over 2 workers: 2
    await sc.cancel(other);
    expect(await value(metrics, "dce_leases_ended_total", { reason: "revoked" })).toBe(2);
    expect(await value(metrics, "dce_leases_active")).toBe(0);
    // Every grant ended exactly one way.
    let ended = 0;
    for (const reason of ["completed", "superseded", "expired", "failed", "released", "revoked"]) {
      ended += (await value(metrics, "dce_leases_ended_total", { reason })) ?? 0;
    }
    expect(ended).toBe(await value(metrics, "dce_leases_granted_total"));
  });

  it("counts cancelled and failed jobs once, and takes jobs that existed before attach as a baseline", async () => {
    const sc = await scenario({ core: { maxAttempts: 1 } });
    const before = await sc.submit(4, 4, 4, 4);
    await sc.cancel(before);
    const metrics = createCoordinatorMetrics({ processMetrics: false });
    metrics.attach(sc.coordinator);
    const job = await sc.submit(4, 4, 4, 4);
    const w = await sc.register("w");
    const [g] = await sc.acquire(w, 1);
    if (!g) throw new Error("expected a grant");
    expect((await sc.fail(w, g)).ok).toBe(true); // maxAttempts = 1: the job fails
    const other = await sc.submit(4, 4, 4, 4);
    await sc.cancel(other);
    await sc.cancel(other); // cancelling again changes nothing
    expect(sc.h.job(job)?.state).toBe("failed");
    expect(await value(metrics, "dce_jobs_finished_total", { state: "failed" })).toBe(1);
    expect(await value(metrics, "dce_jobs_finished_total", { state: "cancelled" })).toBe(1);
    expect(await value(metrics, "dce_jobs_submitted_total")).toBe(2);
    expect(await value(metrics, "dce_jobs", { state: "cancelled" })).toBe(2);
  });

  it("counts deleted jobs by why, and a running job deleted as cancelled once", async () => {
    const sc = await scenario({ core: { retentionMs: 1_000 } });
    const metrics = createCoordinatorMetrics({ processMetrics: false });
    metrics.attach(sc.coordinator);
    const running = await sc.submit(4, 4, 4, 4);
    await sc.h.jobs.deleteJob({ jobId: running });
    const finished = await sc.submit(4, 4, 4, 4);
    await sc.cancel(finished);
    await sc.tick(1_000);
    expect(sc.h.job(finished)).toBeUndefined();
    expect(await value(metrics, "dce_jobs_deleted_total", { reason: "client" })).toBe(1);
    expect(await value(metrics, "dce_jobs_deleted_total", { reason: "retention" })).toBe(1);
    expect(await value(metrics, "dce_jobs_finished_total", { state: "cancelled" })).toBe(2);
    expect(await value(metrics, "dce_jobs", { state: "cancelled" })).toBe(0);
  });

  it("drops the series of forgotten workers at scrape time", async () => {
    const { sc, metrics } = await setup();
    await sc.submit(4, 4, 4, 4);
    const w = await sc.register("gone");
    const [g] = await sc.acquire(w, 1);
    if (!g) throw new Error("expected a grant");
    await sc.complete(w, g);
    expect(await metrics.scrape()).toContain('worker_name="gone"');
    await sc.tick(sc.state.config.workerTtlMs + 1);
    expect(sc.state.workers.size).toBe(0);
    expect(await metrics.scrape()).not.toContain('worker_name="gone"');
  });

  it("stops observing after detach", async () => {
    const { sc, metrics, detach } = await setup();
    detach();
    detach();
    await sc.submit(4, 4, 4, 4);
    expect(await value(metrics, "dce_jobs_submitted_total")).toBe(0);
    expect(await value(metrics, "dce_jobs", { state: "queued" })).toBe(0);
  });

  it("records journal writes in seconds and ignores nonsense", async () => {
    const { metrics } = await setup();
    const observe = metrics.observeJournalWriteMs; // used unbound, as a callback
    observe(2, 3);
    observe(0.5);
    observe(-1);
    observe(Number.NaN, Number.NaN);
    const text = await metrics.scrape();
    expect(text).toMatch(/^dce_journal_write_seconds_count 2$/m);
    expect(text).toMatch(/^dce_journal_write_seconds_sum 0\.0025$/m);
    expect(text).toMatch(/^dce_journal_records_total 3$/m);
  });

  it("uses its own registry, so two coordinators in one process do not clash", async () => {
    const a = createCoordinatorMetrics({ processMetrics: true });
    const b = createCoordinatorMetrics({ processMetrics: true });
    expect(a.registry).not.toBe(b.registry);
    expect(a.registry.getSingleMetric("dce_jobs")).toBeDefined();
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });
});

describe("RPC interceptor", () => {
  it("counts and times calls by service, method and code", async () => {
    const sc = await scenario();
    const metrics = createCoordinatorMetrics({ processMetrics: false });
    const transport = createRouterTransport((r) => registerHealthService(r, sc.coordinator), {
      router: { interceptors: [metrics.interceptor] },
    });
    const health = createClient(Health, transport);
    await health.check({ service: "" });
    await health.check({ service: "" });
    await expect(health.check({ service: "no.Such" })).rejects.toMatchObject({ code: Code.NotFound });
    const labels = { service: "grpc.health.v1.Health", method: "Check" };
    expect(await value(metrics, "dce_rpc_started_total", labels)).toBe(3);
    expect(await value(metrics, "dce_rpc_handled_total", { ...labels, code: "ok" })).toBe(2);
    expect(await value(metrics, "dce_rpc_handled_total", { ...labels, code: "not_found" })).toBe(1);
    const text = await metrics.scrape();
    expect(text).toContain('dce_rpc_handling_seconds_count{service="grpc.health.v1.Health",method="Check",code="ok"} 2');
  });

  it("names codes in lower snake case and maps rejection kinds", async () => {
    expect(codeLabel(0)).toBe("ok");
    expect(codeLabel(Code.NotFound)).toBe("not_found");
    expect(codeLabel(Code.FailedPrecondition)).toBe("failed_precondition");
    expect(codeLabel(Code.Aborted)).toBe("aborted");
    expect(codeLabel(ConnectError.from(new Error("x")).code)).toBe("unknown");
    expect(rejectionReason("stale-fence")).toBe("stale");
    expect(rejectionReason("lease-lost")).toBe("stale");
    expect(rejectionReason("already-completed")).toBe("duplicate");
    expect(rejectionReason("lease-revoked")).toBe("revoked");
    expect(rejectionReason("not-lease-holder")).toBe("other");
  });
});
