/**
 * `client.listJobs()`: the caller's jobs, newest first, fetched a page at a time.
 *
 * @packageDocumentation
 */
import { type ClientContext, checkTimeoutMs, toCallOptions } from "./internal/context.js";
import type { JobState, JobStatusInfo, RequestOptions } from "./types.js";
import { fromWireStatus, toWireStates } from "./wire.js";

/** Options of {@link DceClient.listJobs}. */
export interface ListJobsOptions extends RequestOptions {
  /** Only jobs in one of these states; default every state. */
  readonly states?: readonly JobState[];
  /**
   * Jobs asked for per page, 1 to 1000; default the coordinator's (50). Larger values
   * are lowered to 1000 by the coordinator.
   */
  readonly pageSize?: number;
  /**
   * Resume a listing where an earlier page ended: its `nextPageToken`, with the same
   * `states` (a token of another listing is `InvalidArgument`).
   */
  readonly pageToken?: string;
}

/** One page of a job listing. */
export interface JobPage {
  /** The page's jobs, newest first. */
  readonly jobs: readonly JobStatusInfo[];
  /** The token that fetched this page ("" for the first). */
  readonly pageToken: string;
  /** The token of the next page; "" when this page is the last. */
  readonly nextPageToken: string;
}

/**
 * A listing of jobs: iterate it for every job (pages are fetched lazily, one RPC as
 * each page is reached), or call {@link JobList.byPage} to see the pages and their tokens.
 * Each iteration starts again from `pageToken` (or the newest job).
 */
export interface JobList extends AsyncIterable<JobStatusInfo> {
  /** The pages, in order, each with the token that resumes after it. */
  byPage(): AsyncIterable<JobPage>;
}

const MAX_PAGE_SIZE = 1000;

/**
 * Lists the jobs the client may see, newest first (a client its own, an admin every
 * client's). Makes no RPC until iterated.
 * @throws RangeError (at once) for a bad `states`, `pageSize` or `timeoutMs`.
 */
export function listJobs(ctx: ClientContext, options: ListJobsOptions = {}): JobList {
  checkTimeoutMs(options.timeoutMs, "timeoutMs");
  const states = toWireStates(options.states ?? []);
  const pageSize = options.pageSize ?? 0;
  if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
    throw new RangeError(`pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}, got ${pageSize}`);
  }
  if (options.pageToken !== undefined && typeof options.pageToken !== "string") {
    throw new RangeError("pageToken must be a string (a nextPageToken)");
  }
  async function* pages(): AsyncGenerator<JobPage, void, undefined> {
    let pageToken = options.pageToken ?? "";
    for (;;) {
      const res = await ctx.jobs.listJobs({ pageSize, pageToken, states }, toCallOptions(ctx.config, options));
      yield { jobs: res.jobs.map((s) => fromWireStatus(s)), pageToken, nextPageToken: res.nextPageToken };
      if (res.nextPageToken === "") return;
      pageToken = res.nextPageToken;
    }
  }
  return {
    byPage: pages,
    async *[Symbol.asyncIterator]() {
      for await (const page of pages()) yield* page.jobs;
    },
  };
}
