// What the simulation watches of the real coordinator: every core step it runs (through
// `Coordinator.observe`), every verdict of its verifier, and every batch of journal
// records as it becomes durable. Each goes to the oracle and the run's counters; a broken
// guarantee is kept (the shell swallows an observer's throw) and raised after the step.
import type { StepObserver, VerificationObserver } from "@dce/coordinator";
import {
  type CoreEvent,
  type CoreState,
  checkInvariants,
  type DurableRecord,
  type Grant,
  type JobId,
  type LeaseCheck,
  type OutcomeMap,
  type Result,
  type WorkerId,
} from "@dce/core";
import { SimViolation } from "../oracle.js";
import { clientKeyOf, type Envelope } from "./messages.js";
import type { World } from "./world.js";

type Value<K extends keyof OutcomeMap> = OutcomeMap[K] extends Result<infer T> ? T : never;

/** What a judge reads of the coordinator it watches. */
export interface Watched {
  /** False once that coordinator crashed: what it still does is nobody's business. */
  alive(): boolean;
  state(): Readonly<CoreState>;
  /** The request being handed to the coordinator right now (verification runs inside the call). */
  current(): Envelope | undefined;
  /** A named crash point was reached: crash now ("accept") or after the step's commit ("finalize"). */
  crashPoint(at: "accept" | "finalize"): void;
}

/** Runs `fn`, keeping the first broken guarantee in the world instead of throwing it into the shell. */
function guarded(world: World, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    world.violation ??= e instanceof SimViolation ? e : new SimViolation(`t=${world.nowMs}: the judge threw: ${String(e)}`);
  }
}

/** The observer of every core step of one coordinator incarnation. */
export function stepJudge(world: World, c: Watched): StepObserver {
  const { oracle, stats, sc } = world;
  let steps = 0;
  return (event, out) =>
    guarded(world, () => {
      if (!c.alive() || world.violation) return;
      const ended: JobId[] = [];
      let writes = 0;
      let finalizes = false;
      for (const fx of out.effects) {
        if (fx.type === "write-tile") writes++;
        else if (fx.type === "finalize-result") finalizes = true;
        else if (fx.type === "persist") {
          if (fx.record.type === "job-ended") ended.push(fx.record.jobId);
          if (fx.record.type === "shard-died") {
            stats.shardDeaths++;
            if (world.isPoisonJob(fx.record.jobId) && fx.record.shardIndex === sc.chaos?.poison?.shard) stats.poisonDeaths++;
          }
        }
      }
      if (world.trace) traceStep(world, event, out.outcome as Result<unknown>, out.effects);
      if (writes > 1) oracle.fail(`one ${event.type} wrote ${writes} tiles`);
      judgeOutcome(world, c, event, out.outcome as Result<unknown>);
      world.fairShare?.onStep(event, out.outcome as Result<unknown>, c.state() as CoreState);
      for (const id of ended) oracle.onJobEnded(id);
      // Every step, or every n-th in the big runs of a chaos mode (the check reads every shard).
      const broken = ++steps % (sc.invariantEvery ?? 1) === 0 ? checkInvariants(c.state() as CoreState) : [];
      if (broken.length > 0) oracle.fail(`checkInvariants after ${event.type}: ${broken.join("; ")}`);
      if (writes > 0 && world.crashPointHit("accept")) c.crashPoint("accept");
      if (finalizes && world.crashPointHit("finalize")) c.crashPoint("finalize");
    });
}

/** One line per step (and one per record it journals) in a run's trace. */
function traceStep(world: World, event: CoreEvent, outcome: Result<unknown>, effects: readonly { type: string }[]): void {
  const who = "workerId" in event ? ` ${event.workerId}` : "";
  const lease = "lease" in event ? ` ${event.lease.jobId}/${event.lease.shardIndex}@${event.lease.epoch}` : "";
  const value = outcome.ok ? (JSON.stringify(outcome.value) ?? "") : "";
  const result = outcome.ok ? `ok ${value.length > 120 ? `${value.slice(0, 120)}…` : value}` : `ERR ${outcome.error.kind}`;
  if (event.type !== "ticked" || !outcome.ok || (outcome.value as { expired: number }).expired > 0)
    world.log(`  step ${event.type}${who}${lease} → ${result}`);
  for (const fx of effects)
    if (fx.type === "persist")
      world.log(`    persist ${JSON.stringify((fx as unknown as { record: unknown }).record).slice(0, 140)}`);
}

function judgeOutcome(world: World, c: Watched, event: CoreEvent, outcome: Result<unknown>): void {
  const { oracle, stats } = world;
  const kind = outcome.ok ? "ok" : outcome.error.kind;
  switch (event.type) {
    case "job-submitted": {
      const v = outcome.ok ? (outcome.value as Value<"job-submitted">) : undefined;
      if (v?.created) {
        world.keyOf.set(v.jobId, event.idempotencyKey);
        oracle.onJobCreated(clientKeyOf(event.idempotencyKey, event.clientId), event.idempotencyKey, v.jobId);
      }
      return;
    }
    case "worker-registered":
      world.buildOf.set(event.workerId, event.kernels[0]?.fingerprint ?? "?");
      return;
    case "shards-requested": {
      if (!outcome.ok) return;
      for (const g of outcome.value as Grant[]) {
        const j = c.state().jobs.get(g.lease.jobId);
        if (j !== undefined && j.shardBackupEpoch[g.lease.shardIndex] === g.lease.epoch) stats.backups++;
        stats.grants++;
        oracle.onGrant(event.workerId, g, event.nowMs, j?.fingerprint ?? "?", world.buildOf.get(event.workerId));
      }
      return;
    }
    case "heartbeat-received":
      if (!outcome.ok) return;
      oracle.onHeartbeat(event.workerId, outcome.value as LeaseCheck[], event.nowMs);
      for (const ch of outcome.value as LeaseCheck[]) if (ch.state !== "active") stats.heartbeatsLost++;
      return;
    case "shard-completed":
      oracle.onCompletion(event.workerId, event.lease, outcome.ok, kind, event.nowMs);
      if (outcome.ok) stats.accepted++;
      else {
        stats.rejectedCompletions++;
        if (kind === "stale-fence" || kind === "lease-lost" || kind === "already-completed") stats.staleCompletionsRejected++;
      }
      return;
    case "shard-failed":
      oracle.onFailure(event.workerId, event.lease, outcome.ok, kind, event.nowMs);
      return;
    case "shard-rejected": {
      const q = world.quarantine;
      const identity = q.identityOf(event.workerId);
      const wrong = q.onRejected(event.workerId, c.state());
      if (wrong !== undefined) oracle.fail(wrong);
      if (outcome.ok) {
        const v = outcome.value as Value<"shard-rejected">;
        if (v.quarantined) stats.quarantines++;
        if (v.quarantined && !v.identityQuarantined && world.sc.corrupter?.twin !== undefined)
          stats.sharedIdentityWorkerQuarantines++;
        oracle.onRejected(event.workerId, event.lease, v, event.nowMs, (w: WorkerId) => q.identityOf(w) === identity);
      } else if (kind !== "worker-not-found") {
        oracle.fail(`shard-rejected answered ${kind}`);
      }
      return;
    }
    case "ticked":
      if (!outcome.ok) return;
      stats.expired += (outcome.value as Value<"ticked">).expired;
      oracle.onTick((outcome.value as Value<"ticked">).expired, event.nowMs);
      return;
    default:
      return;
  }
}

/** The observer of every verdict: an honest tile must pass and a corrupted one fail, whatever the probes. */
export function verificationJudge(world: World, c: Watched): VerificationObserver {
  return (v) =>
    guarded(world, () => {
      if (!c.alive() || world.violation) return;
      const env = c.current();
      const where = `${v.jobId}/${v.shardIndex} from ${v.workerId}`;
      if (v.outcome === "error") world.oracle.fail(`result ${where} could not be verified`);
      if (env?.req.t !== "complete") world.oracle.fail(`a verdict on ${where} outside a CompleteShards call`);
      const corrupted = world.corrupted.has(env.req.tile);
      if (v.outcome === "rejected") {
        world.stats.corruptRejected++;
        if (!corrupted) world.oracle.fail(`honest result ${where} rejected`);
      } else if (corrupted) {
        world.oracle.fail(`corrupted result ${where} passed verification`);
      }
    });
}

/** The observer of durable journal batches: the oracle's view of the disk. */
export function commitJudge(world: World, onBatch: (records: readonly DurableRecord[]) => void) {
  return (records: readonly DurableRecord[]) =>
    guarded(world, () => {
      for (const r of records) world.oracle.onDurable(r);
      onBatch(records);
    });
}
