import type { Client } from "@connectrpc/connect";
import { LeaseState, type WorkerService } from "@dce/proto";
import { errorMessage, ShardStopped } from "../errors.js";
import { sleepMs } from "../internal/abort.js";
import type { WorkerLogger } from "../log-scope.js";
import type { Session } from "../session/session.js";
import { leaseFields, leaseKey, type ShardRun } from "./shard.js";

/** What a {@link Heartbeat} needs of the worker around it. */
export interface HeartbeatDeps {
  readonly rpc: Client<typeof WorkerService>;
  readonly session: Session;
  /** The leases held right now (the pull loop's table). */
  readonly runs: ReadonlyMap<string, ShardRun>;
  readonly log: WorkerLogger;
  /** Aborted when everything must stop now: the loop ends. */
  readonly stopSignal: AbortSignal;
  readonly isFatal: () => boolean;
}

/**
 * Renews the held leases every heartbeat period, and stops at once the shard of a lease
 * the coordinator reports CANCELLED or LOST (its thread is terminated).
 */
export class Heartbeat {
  readonly #d: HeartbeatDeps;

  constructor(deps: HeartbeatDeps) {
    this.#d = deps;
  }

  /** Beats until the stop signal. Never rejects. */
  async run(): Promise<void> {
    const signal = this.#d.stopSignal;
    while (!signal.aborted) {
      await sleepMs(this.#d.session.heartbeatPeriodMs(), signal);
      if (signal.aborted) return;
      await this.#beat(signal);
    }
  }

  async #beat(signal: AbortSignal): Promise<void> {
    const { rpc, session, log } = this.#d;
    const runs = [...this.#d.runs.values()];
    const sentAtMs = Date.now();
    try {
      const res = await session.retry(
        "Heartbeat",
        (workerId) =>
          rpc.heartbeat(
            { workerId, leases: runs.map((r) => r.lease) },
            { signal, timeoutMs: Math.max(session.heartbeatPeriodMs(), 1_000) },
          ),
        // One try: the next tick is the retry, and it carries the current leases.
        { signal, workerScoped: true, maxAttempts: 1 },
      );
      for (const status of res.leases) {
        const run = status.lease === undefined ? undefined : this.#d.runs.get(leaseKey(status.lease));
        if (run === undefined) continue; // finished meanwhile
        if (status.state === LeaseState.ACTIVE) {
          run.expiresAtMs = sentAtMs + (status.ttlMs || session.leaseTtlMs);
        } else if (status.state === LeaseState.CANCELLED || status.state === LeaseState.LOST) {
          const state = LeaseState[status.state];
          log.info({ ...leaseFields(run.lease), state, phase: run.phase }, "lease ended; stopping shard");
          run.abort.abort(new ShardStopped(`lease ${state}`));
        }
      }
    } catch (e) {
      if (signal.aborted || this.#d.isFatal()) return;
      log.warn({ err: errorMessage(e), leases: runs.length }, "heartbeat failed");
    }
  }
}
