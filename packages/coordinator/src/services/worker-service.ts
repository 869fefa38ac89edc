import { create } from "@bufbuild/protobuf";
import { Code, type ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { asWorkerId, type Effect, type LeaseKey, sameIdentityPeers, type WorkerId } from "@dce/core";
import {
  type CompleteShardsRequest,
  ErrorReason,
  type ShardOutcome,
  ShardOutcomeSchema,
  type ShardResult,
  type WorkerService,
} from "@dce/proto";
import { dceError, errorInfo, errorInfoFor, malformedRequest } from "../errors.js";
import { localStoreField, type ShellContext } from "../shell/context.js";
import { withInlineInputs } from "../shell/inline-inputs.js";
import type { CheckOutcome } from "../shell/result-verification.js";
import { DataDirError } from "../storage-errors.js";
import { stageTiles } from "../tile-staging.js";
import { fromLeaseRef, fromPeerAddress, toConnectError, toLeaseRef, toLeaseStatus, toShardLease } from "../wire.js";

/** One result of a CompleteShards call on its way to the core. */
interface ReportItem {
  lease: LeaseKey;
  data?: Uint8Array;
  /** How the bytes came: in the message, as a blob, or staged in the local store. */
  via?: "inline" | "blob" | "staged";
  /** The answer when the result never reaches the core (no payload, blob not found). */
  early?: ShardOutcome;
  verdict?: CheckOutcome | undefined;
}

/** WorkerService: workers register, pull leases, renew them, and report results and failures. */
export function createWorkerService(shell: ShellContext): ServiceImpl<typeof WorkerService> {
  return {
    registerWorker: (req, ctx) => {
      if (req.kernels.length === 0) throw malformedRequest("a worker must offer at least one kernel");
      if (req.kernels.length > 32 || req.name.length > 256) {
        throw malformedRequest("registration too large (at most 32 kernels, name of 256 characters)");
      }
      const peerAddress = fromPeerAddress(req.peerAddress);
      const workerId = asWorkerId(shell.newId());
      const out = shell.apply({
        type: "worker-registered",
        nowMs: shell.clock.nowMs(),
        workerId,
        name: req.name,
        kernels: req.kernels.map((k) => ({ name: k.name, fingerprint: k.fingerprint })),
        threads: req.threads,
        peerAddress,
        identity: shell.identities.quarantineIdentityOf(ctx, req.name),
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      const identity = shell.identities.register(ctx, workerId);
      shell.log.info(
        { workerId, identity, name: req.name, kernels: req.kernels.map((k) => k.name), threads: req.threads, peerAddress },
        "worker registered",
      );
      // Live: heard from within a long poll and a lease TTL (the dashboard's "stale" bound).
      const liveSinceMs = shell.clock.nowMs() - shell.config.maxLongPollMs - shell.config.core.leaseTtlMs - 5_000;
      const peers = sameIdentityPeers(shell.state, workerId, liveSinceMs).slice(0, 8);
      if (peers.length > 0) {
        const others = peers.map((w) => ({ workerId: w.id, name: w.name }));
        const hint =
          "give each worker its own certificate (coordinator init-certs --workers N): wrong results from two workers of one identity quarantine all of them";
        shell.log.warn(
          { workerId, name: req.name, identity: peers[0]?.identity, others, hint },
          "two live workers present the same identity",
        );
      }
      const ttl = shell.config.core.leaseTtlMs;
      return {
        workerId,
        leaseTtlMs: ttl,
        heartbeatIntervalMs: Math.max(50, Math.floor(ttl / 3)),
        maxMessageBytes: shell.config.maxMessageBytes,
        ...stagedLocalStore(shell),
      };
    },

    acquireShards: async (req, ctx) => {
      if (req.maxShards < 1) throw malformedRequest("max_shards must be at least 1");
      const maxShards = Math.min(req.maxShards, shell.config.maxShardsPerAcquire);
      const waitMs = Math.min(req.waitMs, shell.config.maxLongPollMs);
      const deadline = shell.clock.nowMs() + waitMs;
      const workerId = asWorkerId(req.workerId);
      shell.identities.checkOwner(ctx, workerId);
      for (;;) {
        await shell.reserveEpochs(maxShards);
        const settled = shell.journalSettled();
        const out = shell.apply({ type: "shards-requested", nowMs: shell.clock.nowMs(), workerId, maxShards });
        if (!out.outcome.ok) throw toConnectError(out.outcome.error);
        if (!settled || !onlyPinsKernels(out.effects)) await out.durable;
        const grants = out.outcome.value;
        if (grants.length > 0 || shell.clock.nowMs() >= deadline || ctx.signal.aborted) {
          for (const g of grants) {
            shell.log.debug({ jobId: g.lease.jobId, shard: g.lease.shardIndex, epoch: g.lease.epoch, workerId }, "lease granted");
          }
          const leases = withInlineInputs(shell.blobs, grants.map(toShardLease));
          // Only leases that name peers get panel hashes: a cluster without peers pays nothing.
          await shell.panelHashes.fill(leases);
          return { leases };
        }
        await shell.waiters.waitForShards(deadline - shell.clock.nowMs(), ctx.signal);
      }
    },

    heartbeat: (req, ctx) => {
      shell.identities.checkOwner(ctx, req.workerId);
      const out = shell.apply({
        type: "heartbeat-received",
        nowMs: shell.clock.nowMs(),
        workerId: asWorkerId(req.workerId),
        leases: req.leases.map(fromLeaseRef),
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      return { leases: out.outcome.value.map(toLeaseStatus) };
    },

    completeShards: async (req, ctx) => {
      const arrivedMs = shell.clock.nowMs();
      const workerId = asWorkerId(req.workerId);
      shell.identities.checkOwner(ctx, workerId);
      // Before reading the report: an unknown worker is told to register again (WORKER_NOT_FOUND).
      if (!shell.state.workers.has(workerId)) throw toConnectError({ kind: "worker-not-found", workerId });
      const read = readReport(shell, workerId, req);
      const items = Array.isArray(read) ? read : await read;
      await verifyAll(shell, workerId, items);
      return { outcomes: await handOver(shell, workerId, items, arrivedMs) };
    },

    failShard: async (req, ctx) => {
      shell.identities.checkOwner(ctx, req.workerId);
      const out = shell.apply({
        type: "shard-failed",
        nowMs: shell.clock.nowMs(),
        workerId: asWorkerId(req.workerId),
        lease: fromLeaseRef(req.lease),
        error: req.error,
        release: req.release,
        jitter: shell.random(),
      });
      if (!out.outcome.ok) throw toConnectError(out.outcome.error);
      await out.durable;
      return {};
    },
  };
}

/**
 * True when a grant journaled nothing but its jobs' kernel pins. Then, if every earlier
 * record was durable already (the jobs' creation, the epochs' reservation), the grant
 * need not wait for its own commit: a result is accepted only by a record journaled
 * after the pin, so a crash before the pin is durable takes back nothing but leases
 * that the restarted coordinator does not know, whose results it refuses. A small job
 * saves a whole fdatasync between its submit and its first lease.
 */
function onlyPinsKernels(effects: readonly Effect[]): boolean {
  return effects.every((fx) => fx.type !== "persist" || fx.record.type === "kernel-pinned");
}

/** The local store as RegisterWorker offers it: with `acceptsStagedTiles` when staged tiles are read. */
function stagedLocalStore(shell: ShellContext): {
  localStore?: { dir: string; storeId: string; acceptsStagedTiles: boolean };
} {
  const { localStore } = localStoreField(shell);
  if (localStore === undefined) return {};
  return { localStore: { ...localStore, acceptsStagedTiles: shell.stagedTiles !== undefined } };
}

/**
 * The results of a CompleteShards call, with their bytes: sent inline, read from the blob
 * store when sent by id, or taken from the staging folder when staged (each staged file
 * read once, after its lease was checked; see StagedTiles).
 */
function readReport(shell: ShellContext, workerId: WorkerId, req: CompleteShardsRequest): ReportItem[] | Promise<ReportItem[]> {
  // Without staged tiles nothing is awaited: tiny tiles are then checked in the same turn
  // as their call arrived (the simulation suite holds the coordinator to that).
  if (!req.results.some((r) => r.payload.case === "staged")) return req.results.map((r) => readResult(shell, r));
  return Promise.all(
    req.results.map((r) => (r.payload.case === "staged" ? readStaged(shell, workerId, r) : readResult(shell, r))),
  );
}

async function readStaged(shell: ShellContext, workerId: WorkerId, r: ShardResult): Promise<ReportItem> {
  const lease = fromLeaseRef(r.lease);
  if (r.payload.case !== "staged") return readResult(shell, r);
  if (shell.stagedTiles === undefined) {
    const e = dceError(Code.FailedPrecondition, ErrorReason.LOCAL_STORE_OFF, "this coordinator does not take staged tiles");
    return { lease, early: outcomeOf(lease, e) };
  }
  const taken = await shell.stagedTiles.take(workerId, lease, r.payload.value.sizeBytes);
  return taken instanceof Uint8Array ? { lease, data: taken, via: "staged" } : { lease, early: outcomeOf(lease, taken) };
}

/** A result sent inline or by blob id (a staged one goes through {@link readStaged}). */
function readResult(shell: ShellContext, r: ShardResult): ReportItem {
  const lease = fromLeaseRef(r.lease);
  if (r.payload.case === "data") return { lease, data: r.payload.value, via: "inline" };
  if (r.payload.case === "blobId") {
    const size = shell.blobs.sizeOf(r.payload.value);
    if (size === undefined) {
      return {
        lease,
        early: create(ShardOutcomeSchema, {
          lease: toLeaseRef(lease),
          code: Code.NotFound,
          message: "result blob not found",
          error: errorInfo(ErrorReason.BLOB_NOT_FOUND, { blob_id: r.payload.value }),
        }),
      };
    }
    return { lease, data: shell.blobs.read(r.payload.value, 0, size).data, via: "blob" };
  }
  return {
    lease,
    early: create(ShardOutcomeSchema, {
      lease: toLeaseRef(lease),
      code: Code.InvalidArgument,
      message: "result has no payload",
      error: errorInfo(ErrorReason.MALFORMED_REQUEST),
    }),
  };
}

/**
 * Checks every result first (tiny ones at once, big ones in the verification threads), so
 * that they all reach the core in one go and one group commit still covers the whole report.
 */
async function verifyAll(shell: ShellContext, workerId: WorkerId, items: ReportItem[]): Promise<void> {
  const waiting: Promise<void>[] = [];
  for (const item of items) {
    if (item.data === undefined) continue;
    const v = shell.verification.check(workerId, item.lease, item.data);
    if (v instanceof Promise) {
      waiting.push(
        v.then((x) => {
          item.verdict = x;
        }),
      );
    } else item.verdict = v;
  }
  if (waiting.length > 0) await Promise.all(waiting);
}

/**
 * Hands checked results to the core and answers each. Tile bytes go to the result
 * buffers before the core accepts them (see stageTiles).
 * @throws DataDirError when the disk refused tiles, ConnectError UNAVAILABLE when a result
 *   could not be verified now: the whole call fails so the worker retries it (holding its
 *   leases), and the results accepted meanwhile then answer ALREADY_EXISTS.
 *   `arrivedMs` is when the report arrived: "shard accepted" logs how long it waited for its checks.
 */
async function handOver(
  shell: ShellContext,
  workerId: WorkerId,
  items: ReportItem[],
  arrivedMs: number,
): Promise<ShardOutcome[]> {
  const nowMs = shell.clock.nowMs();
  const stagedAll = stageTiles(shell.state, shell.sink, workerId, items, nowMs);
  const durables: Promise<void>[] = [];
  let unverified: string | undefined;
  let diskError: DataDirError | undefined;
  const outcomes = items.map(({ lease, data, early, verdict, via }, i) => {
    if (early !== undefined || data === undefined) return early as ShardOutcome;
    const staged = stagedAll[i];
    if (staged instanceof DataDirError) {
      diskError ??= staged;
      return outcomeOf(lease, staged);
    }
    if (verdict !== undefined && !verdict.ok) {
      if ("unavailable" in verdict) {
        unverified = verdict.reason;
        return create(ShardOutcomeSchema, {
          lease: toLeaseRef(lease),
          code: Code.Unavailable,
          message: verdict.reason,
          error: errorInfo(ErrorReason.VERIFICATION_BACKLOG),
        });
      }
      const out = shell.apply({ type: "shard-rejected", nowMs: shell.clock.nowMs(), workerId, lease, reason: verdict.reason });
      durables.push(out.durable);
      const ce = toConnectError(
        out.outcome.ok ? { kind: "result-rejected", ...lease, message: verdict.reason } : out.outcome.error,
      );
      return outcomeOf(lease, ce);
    }
    const out = shell.apply(
      { type: "shard-completed", nowMs, workerId, lease, sizeBytes: data.byteLength },
      staged === "written" ? undefined : data,
    );
    durables.push(out.durable);
    if (out.outcome.ok) {
      // sinceArrivalMs: reading and checking the report (the verification a job's last tile waits for).
      shell.log.debug(
        { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, via, sinceArrivalMs: nowMs - arrivedMs },
        "shard accepted",
      );
      return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: 0 });
    }
    const ce = toConnectError(out.outcome.error);
    shell.log.info(
      { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, code: Code[ce.code], reason: ce.rawMessage },
      "shard result rejected",
    );
    return outcomeOf(lease, ce);
  });
  // One group commit covers every accepted tile of this report (tile bytes first, then records).
  await Promise.all(durables);
  // As below: the worker retries the call (holding its leases) until the disk has room.
  if (diskError !== undefined) {
    shell.log.warn({ workerId, err: diskError.rawMessage }, "tiles refused by the disk; the worker retries");
    throw diskError;
  }
  // The whole call fails so the worker retries it (the others in it are then ALREADY_EXISTS).
  if (unverified !== undefined) throw dceError(Code.Unavailable, ErrorReason.VERIFICATION_BACKLOG, unverified);
  return outcomes;
}

/** The answer to one result that was not accepted: the error's code, message and ErrorInfo. */
function outcomeOf(lease: LeaseKey, e: ConnectError): ShardOutcome {
  return create(ShardOutcomeSchema, { lease: toLeaseRef(lease), code: e.code, message: e.rawMessage, error: errorInfoFor(e) });
}
