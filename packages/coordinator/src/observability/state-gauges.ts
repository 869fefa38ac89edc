import { type CoreState, isTerminal, type JobStateName } from "@dce/core";
import { Gauge, type Registry } from "prom-client";

// The gauges a scrape reads from the coordinator's core state (jobs, shards, leases,
// workers, quarantine, draining). They hold no values of their own: each `collect`
// recounts the live state, so they are right after a restart without any baseline.

const JOB_STATES: readonly JobStateName[] = ["queued", "running", "succeeded", "failed", "cancelled"];

/**
 * Registers, in `registers`, the gauges computed from `state()` at scrape time. A gauge
 * of a detached source (`state()` undefined) reads 0.
 */
export function registerStateGauges(registers: Registry[], state: () => Readonly<CoreState> | undefined): void {
  new Gauge({
    name: "dce_jobs",
    help: "Jobs known to the coordinator, by state.",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const counts = new Map<JobStateName, number>(JOB_STATES.map((s) => [s, 0]));
      for (const job of state()?.jobs.values() ?? []) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
      for (const [s, n] of counts) this.set({ state: s }, n);
    },
  });
  new Gauge({
    name: "dce_shards",
    help: "Shards of queued or running jobs, by shard state (queued = waiting for a lease, including retries).",
    labelNames: ["state"] as const,
    registers,
    collect() {
      let queued = 0;
      let leased = 0;
      let done = 0;
      for (const job of state()?.jobs.values() ?? []) {
        if (isTerminal(job.state)) continue;
        leased += job.leasedCount;
        done += job.doneCount;
        queued += job.plan.shardCount - job.doneCount - job.leasedCount;
      }
      this.set({ state: "queued" }, queued);
      this.set({ state: "leased" }, leased);
      this.set({ state: "done" }, done);
    },
  });
  new Gauge({
    name: "dce_shards_awaiting_retry",
    help: "Shards of running jobs put back for another execution and not leased yet (retry backoff).",
    registers,
    collect() {
      let n = 0;
      for (const job of state()?.jobs.values() ?? []) if (!isTerminal(job.state)) n += job.retryQueue.length;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_leases_active",
    help: "Live shard leases.",
    registers,
    collect() {
      this.set(state()?.leases.size ?? 0);
    },
  });
  new Gauge({
    name: "dce_workers",
    help: "Registered workers (forgotten after the worker TTL without contact).",
    registers,
    collect() {
      this.set(state()?.workers.size ?? 0);
    },
  });
  new Gauge({
    name: "dce_worker_threads",
    help: "Compute threads offered by the registered workers.",
    registers,
    collect() {
      let n = 0;
      for (const w of state()?.workers.values() ?? []) n += w.threads;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_workers_quarantined",
    help: "Workers (registrations) quarantined for their own results that failed verification since the coordinator started; they get no more work.",
    registers,
    collect() {
      let n = 0;
      for (const ident of state()?.identities.values() ?? []) n += ident.quarantinedWorkers.length;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_worker_identities_quarantined",
    help: "Worker identities quarantined after wrong results from two or more of their workers: none of their workers gets work, and they cannot register.",
    registers,
    collect() {
      let n = 0;
      for (const ident of state()?.identities.values() ?? []) if (ident.quarantinedAtMs > 0) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: "dce_worker_rejected_results",
    help: "Results that failed verification, by worker identity (only identities with at least one), and whether the identity is quarantined.",
    labelNames: ["identity", "quarantined"] as const,
    registers,
    collect() {
      this.reset();
      for (const ident of state()?.identities.values() ?? []) {
        this.set({ identity: ident.identity, quarantined: ident.quarantinedAtMs > 0 ? "true" : "false" }, ident.rejectedResults);
      }
    },
  });
  new Gauge({
    name: "dce_coordinator_draining",
    help: "1 while the coordinator drains (grants no new work), else 0.",
    registers,
    collect() {
      this.set(state()?.draining ? 1 : 0);
    },
  });
}
