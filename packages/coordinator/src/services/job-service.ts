import { create } from "@bufbuild/protobuf";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  asClientId,
  asJobId,
  type ClientId,
  idempotencyEntry,
  isTerminal,
  jobOf,
  listJobs,
  MAX_JOB_PRIORITY,
  MIN_JOB_PRIORITY,
  quote,
  resultOf,
  validateMatMulSpec,
  viewJob,
} from "@dce/core";

import { ErrorReason, GetJobResponseSchema, type JobService, type MatrixRef, MatrixRefSchema } from "@dce/proto";
import { formatDurationMs } from "@dce/runtime/duration";
import { principalKey } from "../auth.js";
import { dceError, malformedRequest } from "../errors.js";
import { localStoreField, type ShellContext } from "../shell/context.js";
import { MAX_INLINE_BYTES, storeInline } from "../shell/inline-inputs.js";
import { fromJobStates, toConnectError, toJobStatus } from "../wire.js";
import { decodePageToken, encodePageToken, type ListingScope } from "./page-token.js";

/** ListJobs page size when the request leaves it 0. */
export const DEFAULT_PAGE_SIZE = 50;
/** Largest ListJobs page; a larger page_size is lowered to it. */
export const MAX_PAGE_SIZE = 1000;

/** The single client identity while authentication is off (development mode). */
const ANONYMOUS = asClientId("anonymous");

/**
 * The client a job request acts as: the token's name. An admin acts on any job as
 * its owner (so it sees, downloads and cancels every job); anybody else's job stays
 * NOT_FOUND for a client, exactly like a job that does not exist.
 */
function clientOf(shell: ShellContext, ctx: HandlerContext, jobId?: string): ClientId {
  const p = ctx.values.get(principalKey);
  if (p?.clientId === undefined) return ANONYMOUS;
  if (jobId !== undefined && p.roles.has("admin")) {
    const job = shell.state.jobs.get(asJobId(jobId));
    if (job) return job.clientId;
  }
  return asClientId(p.clientId);
}

/** Whose jobs a ListJobs call sees: an admin every client's, anybody else its own. */
function listOwner(ctx: HandlerContext): ListingScope["owner"] {
  const p = ctx.values.get(principalKey);
  if (p?.clientId === undefined) return ANONYMOUS;
  return p.roles.has("admin") ? { all: true } : p.clientId;
}

/** JobService: clients submit, watch, download, cancel, delete and list jobs. */
export function createJobService(shell: ShellContext): ServiceImpl<typeof JobService> {
  return {
    submitJob: async (req, ctx) => {
      if (req.idempotencyKey.length > 128) throw malformedRequest("idempotency_key is longer than 128 characters");
      const m = req.matmul;
      if (!m) throw malformedRequest("matmul spec is required");
      // Checked before any blob is looked at, so a bad priority is named whatever else is wrong.
      if (req.priority < MIN_JOB_PRIORITY || req.priority > MAX_JOB_PRIORITY) {
        throw dceError(
          Code.InvalidArgument,
          ErrorReason.INVALID_SPEC,
          `priority must be an integer from ${MIN_JOB_PRIORITY} to ${MAX_JOB_PRIORITY}, got ${req.priority}`,
          { field: "priority" },
        );
      }
      const maxRetentionMs = shell.config.core.maxRetentionMs;
      if (req.retentionMs > BigInt(maxRetentionMs)) {
        throw dceError(
          Code.InvalidArgument,
          ErrorReason.MALFORMED_REQUEST,
          `retention_ms ${req.retentionMs} (${formatDurationMs(Number(req.retentionMs))}) is above this coordinator's maximum of ${maxRetentionMs} ms (${formatDurationMs(maxRetentionMs)}, --max-retention)`,
          { limit: "max_retention_ms", max_retention_ms: maxRetentionMs },
        );
      }
      const spec = { a: m.a, b: m.b, tileRows: m.tileRows, tileCols: m.tileCols, kernel: m.kernel };
      // Limits first (pure, no I/O): a spec over a limit fails with that limit's name, whatever
      // blobs it names. Other problems are reported in their usual order, below and by the core.
      // An inline matrix gets its blob id once stored.
      const early = (r: MatrixRef | undefined) =>
        r && r.blobId === "" && r.inlineData.byteLength > 0 ? { rows: r.rows, cols: r.cols, blobId: "0".repeat(64) } : r;
      const valid = validateMatMulSpec({ ...spec, a: early(m.a), b: early(m.b) }, shell.config.core.limits);
      if (!valid.ok && valid.error.kind === "over-limit") throw toConnectError(valid.error);
      // The data must be uploaded (or sent inline), and its length must match the declared shape.
      for (const [name, ref] of [
        ["A", m.a],
        ["B", m.b],
      ] as const) {
        if (!ref) continue; // reported by spec validation
        if (ref.inlineData.byteLength > 0) storeInline(shell.blobs, name, ref);
        const size = shell.blobs.sizeOf(ref.blobId);
        if (size === undefined) {
          throw dceError(
            Code.NotFound,
            ErrorReason.BLOB_NOT_FOUND,
            `matrix ${name}: blob ${quote(ref.blobId, 64)} not found; upload it first`,
            {
              blob_id: ref.blobId,
            },
          );
        }
        const want = ref.rows * ref.cols * 8;
        if (size !== want) {
          throw dceError(
            Code.InvalidArgument,
            ErrorReason.INVALID_SPEC,
            `matrix ${name}: data is ${size} bytes but ${ref.rows}x${ref.cols} float64 needs ${want}`,
          );
        }
      }
      const clientId = clientOf(shell, ctx);
      // A new job's C must fit on disk (a retry of a submitted one is answered as before).
      if (valid.ok && !shell.state.idempotency.has(idempotencyEntry(clientId, req.idempotencyKey))) {
        shell.sink.admit(valid.value.a.rows, valid.value.b.cols);
      }
      const out = shell.apply({
        type: "job-submitted",
        nowMs: shell.clock.nowMs(),
        clientId,
        idempotencyKey: req.idempotencyKey,
        spec,
        jobId: asJobId(shell.newId()),
        priority: req.priority,
        // The token's weight as the auth layer read it; it reaches the core with each submit,
        // so scheduling replays from events (a changed weight applies from the next submit).
        weight: ctx.values.get(principalKey)?.clientWeight ?? 1,
        retentionMs: Number(req.retentionMs),
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      const { jobId, created } = out.outcome.value;
      const job = shell.state.jobs.get(jobId);
      // Logged before the commit wakes the workers, so it is the job's first line
      // (a failed commit stops the process with a fatal line of its own).
      if (created && job) {
        shell.log.info(
          {
            jobId,
            rows: job.plan.rows,
            cols: job.plan.cols,
            inner: job.plan.inner,
            shards: job.plan.shardCount,
            priority: job.priority,
            weight: job.weight,
          },
          "job submitted",
        );
      } else {
        shell.log.debug({ jobId }, "job submitted again (same idempotency key)");
      }
      await out.durable;
      return { jobId, created, ...(job ? { status: toJobStatus(viewJob(job, shell.config.core)) } : {}) };
    },

    getJob: async (req, ctx) => {
      const clientId = clientOf(shell, ctx, req.jobId);
      const jobId = asJobId(req.jobId);
      const first = jobOf(shell.state, clientId, jobId);
      if (!first.ok) throw toConnectError(first.error);
      const waitMs = Math.min(req.waitMs, shell.config.maxLongPollMs);
      const deadline = shell.clock.nowMs() + waitMs;
      let job = first.value;
      while (
        waitMs > 0 &&
        (req.untilTerminal || BigInt(job.version) <= req.afterVersion) &&
        !isTerminal(job.state) &&
        shell.clock.nowMs() < deadline &&
        !ctx.signal.aborted
      ) {
        await shell.waiters.waitForJob(jobId, deadline - shell.clock.nowMs(), ctx.signal);
        const again = jobOf(shell.state, clientId, jobId);
        if (!again.ok) throw toConnectError(again.error);
        job = again.value;
      }
      const res = create(GetJobResponseSchema, { status: toJobStatus(viewJob(job, shell.config.core)) });
      const inlineMax = Math.min(req.inlineResultMaxBytes, MAX_INLINE_BYTES);
      if (job.state === "succeeded" && inlineMax > 0 && job.plan.rows * job.plan.cols * 8 <= inlineMax) {
        const r = resultOf(shell.state, clientId, jobId);
        if (r.ok) {
          const { blobId } = r.value;
          const size = job.plan.rows * job.plan.cols * 8;
          res.result = create(MatrixRefSchema, {
            rows: job.plan.rows,
            cols: job.plan.cols,
            blobId,
            inlineData: shell.blobs.read(blobId, 0, size).data,
          });
        }
      }
      // What this answer says may still be on its way to disk (a success, or tiles whose
      // records are being committed): it goes out once everything journaled before it is
      // durable. Not read again after the wait: newer state would not be covered.
      await shell.settle();
      return res;
    },

    getResult: async (req, ctx) => {
      const r = resultOf(shell.state, clientOf(shell, ctx, req.jobId), asJobId(req.jobId));
      if (!r.ok) throw toConnectError(r.error);
      const { job, blobId } = r.value;
      // A success still being committed is not a result yet (see getJob).
      await shell.settle();
      return {
        result: { rows: job.plan.rows, cols: job.plan.cols, blobId },
        sizeBytes: BigInt(job.plan.rows * job.plan.cols * 8),
        ...localStoreField(shell),
      };
    },

    cancelJob: async (req, ctx) => {
      const clientId = clientOf(shell, ctx, req.jobId);
      const out = shell.apply({
        type: "job-cancel-requested",
        nowMs: shell.clock.nowMs(),
        clientId,
        jobId: asJobId(req.jobId),
        reason: req.reason,
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      await out.durable;
      const job = jobOf(shell.state, clientId, out.outcome.value.jobId);
      if (!job.ok) throw toConnectError(job.error);
      return { status: toJobStatus(viewJob(job.value, shell.config.core)) };
    },

    deleteJob: async (req, ctx) => {
      const out = shell.apply({
        type: "job-delete-requested",
        nowMs: shell.clock.nowMs(),
        clientId: clientOf(shell, ctx, req.jobId),
        jobId: asJobId(req.jobId),
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      await out.durable;
      return {};
    },

    listJobs: (req, ctx) => {
      if (req.pageSize < 0)
        throw malformedRequest(`page_size must be 0 (the default, ${DEFAULT_PAGE_SIZE}) or more, got ${req.pageSize}`);
      const limit = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
      const scope: ListingScope = { owner: listOwner(ctx), states: fromJobStates(req.states) };
      const after = req.pageToken === "" ? undefined : decodePageToken(req.pageToken, scope);
      const page = listJobs(shell.state, {
        ...(typeof scope.owner === "string" ? { owner: asClientId(scope.owner) } : {}),
        states: scope.states,
        limit,
        ...(after ? { after } : {}),
      });
      return {
        jobs: page.jobs.map((job) => toJobStatus(viewJob(job, shell.config.core))),
        nextPageToken: page.next ? encodePageToken(page.next, scope) : "",
      };
    },
  };
}
