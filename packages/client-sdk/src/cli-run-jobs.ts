/**
 * `dce list` and `dce delete`: the commands that look after jobs rather than run one.
 *
 * @packageDocumentation
 */
import type { DeleteCommand, ListCommand } from "./cli-args.js";
import type { DceClient } from "./client.js";
import type { JobStatusInfo } from "./types.js";

/** Where the commands write, and what stops them (SIGINT/SIGTERM). */
export interface JobCommandIo {
  readonly stdout: { write(text: string): unknown };
  readonly signal: AbortSignal;
}

/** Deletes one job; prints `ID deleted` (or `{"jobId":…,"deleted":true}`). */
export async function runDelete(client: DceClient, command: DeleteCommand, io: JobCommandIo): Promise<void> {
  await client.deleteJob(command.jobId, { signal: io.signal });
  io.stdout.write(command.json ? `${JSON.stringify({ jobId: command.jobId, deleted: true })}\n` : `${command.jobId} deleted\n`);
}

/**
 * Lists jobs newest first, at most `limit` of them: one JSON object per line with
 * `--json`, otherwise a table with a header (written once every page has been read, so
 * the columns line up).
 */
export async function runList(client: DceClient, command: ListCommand, io: JobCommandIo): Promise<void> {
  const limit = command.limit ?? Number.POSITIVE_INFINITY;
  const pageSize = Math.min(1000, Number.isFinite(limit) ? limit : 1000);
  const jobs: JobStatusInfo[] = [];
  for await (const job of client.listJobs({ states: command.states, pageSize, signal: io.signal })) {
    jobs.push(job);
    // JSON lines go out as they come: a pipe sees the first page before the last is read.
    if (command.json) io.stdout.write(`${JSON.stringify(job)}\n`);
    if (jobs.length >= limit) break; // before the next page is fetched
  }
  if (!command.json) io.stdout.write(formatJobTable(jobs));
}

/** A table of jobs: id, state, shards, created, expires, owner. */
export function formatJobTable(jobs: readonly JobStatusInfo[]): string {
  const rows = [
    ["JOB", "STATE", "SHARDS", "SIZE", "CREATED", "EXPIRES", "OWNER"],
    ...jobs.map((j) => [
      j.jobId,
      j.state,
      `${j.shardsDone}/${j.shardsTotal}`,
      `${j.rows}x${j.cols}`,
      isoSeconds(j.createdAtMs),
      j.expiresAtMs === undefined ? "-" : isoSeconds(j.expiresAtMs),
      j.owner,
    ]),
  ];
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  return rows
    .map(
      (r) =>
        `${r
          .map((cell, c) => cell.padEnd(widths[c] ?? 0))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

/** `2026-12-03T09:12:41Z`: a UTC time to the second. */
function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}
