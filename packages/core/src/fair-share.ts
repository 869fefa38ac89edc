import { setClientWeight } from "./fair-queue.js";
import type { ClientId } from "./ids.js";
import { tileBounds } from "./plan.js";
import type { CoreState, JobRecord } from "./state.js";

// The jobs' side of weighted fair share: what a shard costs, and each client's jobs in
// the order its work is granted. The fair queue between clients is in fair-queue.ts.

/** The lowest and highest job priority a submit may ask for (default 0). */
export const MIN_JOB_PRIORITY = -100;
export const MAX_JOB_PRIORITY = 100;

/** Expected cost of one shard of `job`: multiply-adds of its tile (tile rows × tile cols × k). */
export function shardCost(job: JobRecord, shardIndex: number): number {
  const t = tileBounds(job.plan, shardIndex);
  return Math.max(1, (t.rowEnd - t.rowStart) * (t.colEnd - t.colStart) * job.plan.inner);
}

/**
 * The active jobs of each client in the order that client's work is granted: higher
 * priority first, then first submitted first (`activeJobs` is in submit order). Clients
 * without an active job are dropped from the fair queue, and with no client left the
 * virtual time starts again from 0 (so it never grows without bound).
 */
export function clientQueues(s: CoreState): Map<ClientId, JobRecord[]> {
  const queues = new Map<ClientId, JobRecord[]>();
  for (const id of s.activeJobs) {
    const job = s.jobs.get(id);
    if (!job) continue;
    const q = queues.get(job.clientId);
    if (q) q.push(job);
    else queues.set(job.clientId, [job]);
  }
  const f = s.fairShare;
  for (const id of [...f.clients.keys()]) if (!queues.has(id)) f.clients.delete(id);
  if (f.clients.size === 0) f.virtualTime = 0;
  for (const [id, q] of queues) {
    // Only a state built without submits (tests) lacks the entry: take its latest job's weight.
    if (!f.clients.has(id)) setClientWeight(f, id, q[q.length - 1]?.weight ?? 1);
    q.sort((x, y) => y.priority - x.priority); // stable: FIFO within a priority
  }
  return queues;
}
