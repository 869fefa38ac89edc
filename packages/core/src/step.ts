import { ok } from "./errors.js";
import type { CoreEvent, Effect, OutcomeMap, StepResult } from "./events.js";
import { deleteRequested } from "./job-deletion.js";
import { cancel, finalized, resultBufferLost, resultFailed, submit } from "./job-lifecycle.js";
import { heartbeat } from "./leases.js";
import { complete, fail, rejected } from "./results.js";
import { acquire } from "./scheduling.js";
import type { CoreState } from "./state.js";
import { tick } from "./tick.js";
import { register } from "./workers.js";

// The event handlers live by concern: job-lifecycle.ts (submit, cancel, the result's
// end), job-deletion.ts (delete, retention), workers.ts (registration), scheduling.ts (grants, fair share, stragglers),
// leases.ts (fencing checks, heartbeats), results.ts (completions, failures,
// rejections), tick.ts (expiry) and retries.ts (re-queueing). Reads are in queries.ts.

/**
 * Applies one event to the coordinator state and returns the answer for its sender
 * and the effects the shell must carry out. Deterministic: it reads no clock, no
 * randomness and does no I/O; `state` is updated in place (the shell owns the only
 * copy), and the same initial state fed the same events always yields the same
 * outcomes and effects. It never throws for expected outcomes.
 */
export function step<E extends CoreEvent>(state: CoreState, event: E): StepResult<OutcomeMap[E["type"]]> {
  const fx: Effect[] = [];
  const outcome = dispatch(state, event, fx);
  return { outcome: outcome as OutcomeMap[E["type"]], effects: fx };
}

function dispatch(s: CoreState, e: CoreEvent, fx: Effect[]): OutcomeMap[CoreEvent["type"]] {
  switch (e.type) {
    case "job-submitted":
      return submit(s, e, fx);
    case "job-cancel-requested":
      return cancel(s, e, fx);
    case "job-delete-requested":
      return deleteRequested(s, e, fx);
    case "worker-registered":
      return register(s, e);
    case "shards-requested":
      return acquire(s, e, fx);
    case "heartbeat-received":
      return heartbeat(s, e);
    case "shard-completed":
      return complete(s, e, fx);
    case "shard-rejected":
      return rejected(s, e, fx);
    case "shard-failed":
      return fail(s, e, fx);
    case "ticked":
      return tick(s, e, fx);
    case "result-finalized":
      return finalized(s, e, fx);
    case "result-failed":
      return resultFailed(s, e, fx);
    case "result-buffer-lost":
      return resultBufferLost(s, e, fx);
    case "drain-started":
      s.draining = true;
      return ok(null);
  }
}
