import type { ClientId } from "./ids.js";

// Weighted fair share between clients: start-time fair queuing (SFQ) over the expected
// cost of each granted shard.
//
// Why SFQ and not deficit round-robin. DRR needs a quantum at least as large as the
// costliest shard to stay O(1), and then serves each client in bursts of a whole quantum:
// a client that just got backlogged waits for the round to reach it, behind up to one
// quantum of every other client. Our shards vary in cost by orders of magnitude (a 16×16
// tile of k=8 next to a 512×512 tile of k=16384), so a fitting quantum is large and those
// bursts are long. SFQ keeps one virtual time `V` and a finish tag per client (the virtual
// time at which its service so far, divided by its weight, ends); each grant goes to the
// backlogged client with the smallest start tag max(finish, V) and advances its finish
// tag by cost / weight. It needs no quantum, its unfairness between two backlogged
// clients is bounded by one shard's cost over their weights (so over a window of many
// shards the shares converge to the weights), and a client that becomes backlogged starts
// at `V`, ahead of every client that is being served: its first shard is the very next
// grant (the small job behind a large one). Clamping to `V` is also what bounds credit:
// an idle client's old finish tag is left behind, so idleness is never banked.
// Choosing a client is a scan of the clients with active jobs (a handful in practice;
// at most maxActiveJobs), which keeps the state plain and snapshot-free; a heap would
// make it O(log n) if that number ever grows large.

/** The largest client weight (a token's `--weight`); the smallest is 1, the default. */
export const MAX_CLIENT_WEIGHT = 1000;

/** One client's place in the fair queue. */
export interface ClientShare {
  /** The weight its token carried at its latest accepted submit. */
  weight: number;
  /** Virtual time at which the work granted to it so far (cost / weight) ends. */
  finishTag: number;
  /** {@link FairShareState.grantSeq} of its latest grant (0 = never): ties go to the client served longest ago. */
  lastGrantSeq: number;
}

/**
 * The fair queue's state. Not durable: after a restart every client starts level, at
 * virtual time 0 (the weights come back with the jobs, see `durable.ts`).
 */
export interface FairShareState {
  /** The start tag of the latest grant; never decreases while any client has an active job. */
  virtualTime: number;
  /** Grants made so far (orders ties). */
  grantSeq: number;
  /** Clients with active jobs (others are pruned when a worker asks for work). */
  readonly clients: Map<ClientId, ClientShare>;
}

/** An empty fair queue. */
export function createFairShare(): FairShareState {
  return { virtualTime: 0, grantSeq: 0, clients: new Map() };
}

/**
 * Records the weight a client's submit carried. A token's weight changed in the token
 * file takes effect at its next submit: running jobs are scheduled with the weight of the
 * client's latest submit, so every decision follows from the events alone.
 */
export function setClientWeight(f: FairShareState, clientId: ClientId, weight: number): void {
  const c = f.clients.get(clientId);
  if (c) c.weight = weight;
  else f.clients.set(clientId, { weight, finishTag: f.virtualTime, lastGrantSeq: 0 });
}

/**
 * The client among `candidates` whose next grant starts earliest in virtual time (ties:
 * served longest ago, then by id, so the choice is deterministic). Undefined if none.
 */
export function nextClient(f: FairShareState, candidates: Iterable<ClientId>): ClientId | undefined {
  let best: ClientId | undefined;
  let bestStart = 0;
  let bestSeq = 0;
  for (const id of candidates) {
    const c = f.clients.get(id);
    const start = Math.max(c?.finishTag ?? 0, f.virtualTime);
    const seq = c?.lastGrantSeq ?? 0;
    if (best === undefined || start < bestStart || (start === bestStart && (seq < bestSeq || (seq === bestSeq && id < best)))) {
      best = id;
      bestStart = start;
      bestSeq = seq;
    }
  }
  return best;
}

/** Charges one granted shard of `cost` to `clientId`: its finish tag moves on by cost / weight. */
export function chargeGrant(f: FairShareState, clientId: ClientId, cost: number): void {
  let c = f.clients.get(clientId);
  if (!c) {
    c = { weight: 1, finishTag: f.virtualTime, lastGrantSeq: 0 };
    f.clients.set(clientId, c);
  }
  const start = Math.max(c.finishTag, f.virtualTime);
  f.virtualTime = start;
  c.finishTag = start + cost / Math.max(1, c.weight);
  c.lastGrantSeq = ++f.grantSeq;
}
