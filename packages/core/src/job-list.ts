import type { ClientId } from "./ids.js";
import type { CoreState, JobRecord, JobStateName } from "./state.js";

// Listing jobs, newest first, one page at a time (ListJobs). The order is total and
// stable: by creation time, then by job id, both descending; a page ends at a cursor
// naming its last job, and the next page starts strictly after it. A cursor stays valid
// when jobs are created (newer ones sort before it) or deleted (it names a position,
// not a job that must still exist).

/** A position in the newest-first order: the last job of a page. */
export interface JobCursor {
  readonly createdAtMs: number;
  readonly jobId: string;
}

/** What to list. */
export interface JobListQuery {
  /** Only this client's jobs; undefined lists every client's (admins). */
  readonly owner?: ClientId;
  /** Only jobs in these states; empty for all. */
  readonly states: readonly JobStateName[];
  /** Start strictly after this position; undefined for the first page. */
  readonly after?: JobCursor;
  /** Most jobs in the page; at least 1. */
  readonly limit: number;
}

/** One page of jobs. */
export interface JobPage {
  readonly jobs: JobRecord[];
  /** Where the next page starts; undefined when this page is the last. */
  readonly next?: JobCursor;
}

/** True when job `x` comes before position `c` in the newest-first order. */
function before(x: JobCursor, c: JobCursor): boolean {
  return x.createdAtMs > c.createdAtMs || (x.createdAtMs === c.createdAtMs && x.jobId > c.jobId);
}

/** Newest first: later creation first, then the larger id. */
function newestFirst(x: JobRecord, y: JobRecord): number {
  if (x.createdAtMs !== y.createdAtMs) return y.createdAtMs - x.createdAtMs;
  return x.id < y.id ? 1 : x.id > y.id ? -1 : 0;
}

/** Lists one page of jobs matching `q`, newest first. Read-only. */
export function listJobs(s: Readonly<CoreState>, q: JobListQuery): JobPage {
  const states = new Set(q.states);
  const matching: JobRecord[] = [];
  for (const job of s.jobs.values()) {
    if (q.owner !== undefined && job.clientId !== q.owner) continue;
    if (states.size > 0 && !states.has(job.state)) continue;
    if (q.after && !before(q.after, { createdAtMs: job.createdAtMs, jobId: job.id })) continue;
    matching.push(job);
  }
  matching.sort(newestFirst);
  const limit = Math.max(1, Math.floor(q.limit));
  const jobs = matching.slice(0, limit);
  const last = jobs.at(-1);
  if (matching.length <= limit || !last) return { jobs };
  return { jobs, next: { createdAtMs: last.createdAtMs, jobId: last.id } };
}
