/**
 * Who is shut out after results that fail verification: the rule, kept apart from the
 * lease bookkeeping in `results.ts` and `leases.ts`.
 *
 * A worker is one registration (one process, one `WorkerId`); its identity is who the
 * shell authenticated (the certificate's CN, or the registered name without
 * certificates). Several workers can present one identity — a certificate copied to
 * every machine, or one machine's worker restarted — so evidence against one process is
 * not evidence against the identity:
 *
 * - **Worker**: after `quarantineAfterRejections` (K) of *its own* results were rejected,
 *   the registration is quarantined: its leases are taken back and it gets no more
 *   (`worker-quarantined`, so the process stops). Other workers of its identity go on.
 *   Not durable: a restarted coordinator forgets every registration, and a worker that
 *   registers again is a new one.
 * - **Identity**: once K results of the identity were rejected *and* they came from at
 *   least two of its registrations, the evidence is about the identity (a second process
 *   with it returned wrong results too, or a quarantined process came back under a new
 *   registration). Every worker of the identity is shut out, it cannot register again,
 *   and the quarantine is durable (a `worker-quarantined` journal record).
 *
 * Counts below either limit are not durable: each wrong result is caught and costs one
 * re-execution, so a restart only gives a bad worker K more tries. Pinned by
 * `quarantine.test.ts` and the simulation (`test/sim`, "honest worker ... quarantined").
 *
 * @module
 */
import { type CoreError, err, ok, type Result } from "./errors.js";
import type { Effect } from "./events.js";
import type { WorkerId } from "./ids.js";
import type { CoreState, IdentityRecord, WorkerRecord } from "./state.js";

/** What the quarantine rule decided after one rejected result. */
export interface QuarantineDecision {
  /** This rejection quarantined the sending worker (registration). */
  readonly workerQuarantined: boolean;
  /** This rejection quarantined the sender's identity (every worker presenting it). */
  readonly identityQuarantined: boolean;
  /** Registered workers shut out by this rejection, whose leases go back. */
  readonly shutOut: readonly WorkerRecord[];
}

/** Counts one rejected result (`why`) against `worker` and its identity; returns the identity's record. */
export function countRejection(s: CoreState, worker: WorkerRecord, why: string): IdentityRecord {
  let rec = s.identities.get(worker.identity);
  if (!rec) {
    rec = {
      identity: worker.identity,
      rejectedResults: 0,
      rejectingWorkers: 0,
      quarantinedAtMs: 0,
      quarantinedWorkers: [],
      lastReason: "",
    };
    s.identities.set(worker.identity, rec);
  }
  worker.rejectedResults++;
  if (worker.rejectedResults === 1) rec.rejectingWorkers++;
  rec.rejectedResults++;
  rec.lastReason = why;
  return rec;
}

/**
 * Applies the rule in the module comment to `worker` after {@link countRejection}.
 * Emits the journal record and logs of a quarantine; the caller takes back the leases
 * of the workers in `shutOut`.
 */
export function applyQuarantineRule(s: CoreState, worker: WorkerRecord, nowMs: number, fx: Effect[]): QuarantineDecision {
  const rec = s.identities.get(worker.identity);
  if (!rec) return { workerQuarantined: false, identityQuarantined: false, shutOut: [] };
  const why = rec.lastReason;
  const limit = s.config.quarantineAfterRejections;
  const shutOut: WorkerRecord[] = [];
  let workerQuarantined = false;
  let identityQuarantined = false;
  if (limit > 0 && worker.rejectedResults >= limit && worker.quarantinedAtMs === 0 && rec.quarantinedAtMs === 0) {
    worker.quarantinedAtMs = nowMs;
    workerQuarantined = true;
    rec.quarantinedWorkers.push({ workerId: worker.id, name: worker.name, rejectedResults: worker.rejectedResults, atMs: nowMs });
    shutOut.push(worker);
    fx.push({
      type: "log",
      level: "error",
      msg: "worker quarantined",
      fields: {
        workerId: worker.id,
        name: worker.name,
        identity: rec.identity,
        scope: "worker",
        rejectedResults: worker.rejectedResults,
        reason: why,
      },
    });
  }
  if (limit > 0 && rec.rejectingWorkers >= 2 && rec.rejectedResults >= limit && rec.quarantinedAtMs === 0) {
    rec.quarantinedAtMs = nowMs;
    identityQuarantined = true;
    for (const w of s.workers.values()) if (w.identity === rec.identity && !shutOut.includes(w)) shutOut.push(w);
    fx.push({
      type: "persist",
      record: {
        type: "worker-quarantined",
        identity: rec.identity,
        rejectedResults: rec.rejectedResults,
        reason: why,
        atMs: nowMs,
      },
    });
    fx.push({
      type: "log",
      level: "error",
      msg: "worker identity quarantined",
      fields: {
        identity: rec.identity,
        scope: "identity",
        rejectedResults: rec.rejectedResults,
        workersWithRejections: rec.rejectingWorkers,
        reason: why,
      },
    });
  }
  return { workerQuarantined, identityQuarantined, shutOut };
}

/** `worker-quarantined` when `identity` is quarantined (it may not register), else ok. */
export function checkIdentity(s: CoreState, identity: string): Result<null> {
  const rec = s.identities.get(identity);
  if (rec && rec.quarantinedAtMs > 0) {
    return err({ kind: "worker-quarantined", identity, rejectedResults: rec.rejectedResults });
  }
  return ok(null);
}

/** `worker-quarantined` when `worker` or its identity is quarantined (it gets no leases), else undefined. */
export function shutOutError(s: CoreState, worker: WorkerRecord): CoreError | undefined {
  if (worker.quarantinedAtMs > 0) {
    return {
      kind: "worker-quarantined",
      identity: worker.identity,
      rejectedResults: worker.rejectedResults,
      workerId: worker.id,
    };
  }
  const r = checkIdentity(s, worker.identity);
  return r.ok ? undefined : r.error;
}

/** True when `worker` gets no more leases (its registration or its identity is quarantined). */
export function isShutOut(s: CoreState, worker: WorkerRecord): boolean {
  return worker.quarantinedAtMs > 0 || (s.identities.get(worker.identity)?.quarantinedAtMs ?? 0) > 0;
}

/**
 * The other registered workers that present `workerId`'s identity and were heard from
 * at or after `sinceMs`, oldest registration first. Read-only; the shell warns about
 * them, since evidence against one can quarantine the identity they share.
 */
export function sameIdentityPeers(s: Readonly<CoreState>, workerId: WorkerId, sinceMs: number): WorkerRecord[] {
  const me = s.workers.get(workerId);
  if (!me) return [];
  const out: WorkerRecord[] = [];
  for (const w of s.workers.values()) {
    if (w.id !== workerId && w.identity === me.identity && w.lastSeenMs >= sinceMs && !isShutOut(s as CoreState, w)) out.push(w);
  }
  return out;
}
