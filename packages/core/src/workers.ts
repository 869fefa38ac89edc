import { err, ok } from "./errors.js";
import type { Effect, OutcomeMap, WorkerRegistered } from "./events.js";
import { forgetPlacement } from "./grant-placement.js";
import type { WorkerId } from "./ids.js";
import { checkIdentity } from "./quarantine.js";
import type { CoreState } from "./state.js";

/** Registers a worker under the fresh id the shell chose, unless its identity is quarantined. */
export function register(s: CoreState, e: WorkerRegistered): OutcomeMap["worker-registered"] {
  if (s.workers.has(e.workerId)) return err({ kind: "invalid-spec", message: `worker id ${e.workerId} is already in use` });
  const identity = e.identity ?? e.name;
  const refused = checkIdentity(s, identity);
  if (!refused.ok) return refused;
  // An empty fingerprint would leave a job unpinned and let it mix kernel builds.
  const blank = e.kernels.find((k) => k.name === "" || k.fingerprint === "");
  if (blank) return err({ kind: "invalid-spec", message: "every kernel needs a non-empty name and fingerprint" });
  s.workers.set(e.workerId, {
    id: e.workerId,
    name: e.name,
    identity,
    kernels: e.kernels.map((k) => ({ name: k.name, fingerprint: k.fingerprint })),
    threads: e.threads,
    peerAddress: e.peerAddress,
    lastSeenMs: e.nowMs,
    failureStreak: 0,
    throttledUntilMs: 0,
    leases: new Set(),
    rejectedResults: 0,
    quarantinedAtMs: 0,
  });
  return ok({ workerId: e.workerId });
}

/** Forgets workers that hold no lease and have not been seen for `workerTtlMs`. */
export function forgetSilentWorkers(s: CoreState, nowMs: number, fx: Effect[]): void {
  for (const w of [...s.workers.values()]) {
    if (w.leases.size === 0 && nowMs - w.lastSeenMs > s.config.workerTtlMs) {
      s.workers.delete(w.id);
      forgetPlacement(s, w.id);
      fx.push({ type: "log", level: "info", msg: "worker forgotten", fields: { workerId: w.id, name: w.name } });
    }
  }
}

/**
 * Counts an expired lease against its worker, once per silence: leases that expire with no
 * word from the worker since its last such charge (a crash, a cut link) are one loss of
 * contact, not one failure each. Otherwise a worker that held 20 leases when its link was
 * cut came back throttled for `throttleMaxMs`, with work waiting. A worker that is heard
 * from (heartbeats, polls) but lets its leases run out is charged at each expiry, and
 * throttled like one whose shards fail.
 */
export function chargeExpiry(s: CoreState, workerId: WorkerId, nowMs: number, fx: Effect[]): void {
  const w = s.workers.get(workerId);
  if (!w) return;
  if (w.expiryChargedAtMs !== undefined && w.lastSeenMs < w.expiryChargedAtMs) return;
  w.expiryChargedAtMs = nowMs;
  chargeFailure(s, workerId, nowMs, fx);
}

/** Counts a failed or expired execution against its worker; a worker that keeps failing is throttled. */
export function chargeFailure(s: CoreState, workerId: WorkerId, nowMs: number, fx: Effect[]): void {
  const w = s.workers.get(workerId);
  if (!w) return;
  w.failureStreak++;
  const over = w.failureStreak - s.config.throttleAfterFailures;
  if (over >= 0) {
    const ms = Math.min(s.config.throttleMaxMs, s.config.throttleBaseMs * 2 ** over);
    w.throttledUntilMs = nowMs + ms;
    fx.push({
      type: "log",
      level: "warn",
      msg: "worker throttled",
      fields: { workerId: w.id, name: w.name, failures: w.failureStreak, ms },
    });
  }
}
