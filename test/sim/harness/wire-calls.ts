// The simulation's requests as the real coordinator's Connect handlers receive them, and
// their answers as the simulated processes read them. The handlers are called directly
// (as `Coordinator.routes` registers them), with no transport: a call runs synchronously
// up to its first await, which keeps the run a pure function of its seed.
import { setMaxListeners } from "node:events";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { type Coordinator, principalKey } from "@dce/coordinator";
import { asJobId, type LeaseKey, type WorkerId } from "@dce/core";
import {
  AcquireShardsRequestSchema,
  CompleteShardsRequestSchema,
  ErrorInfoSchema,
  ErrorReason,
  FailShardRequestSchema,
  HeartbeatRequestSchema,
  JobService,
  LeaseRefSchema,
  LeaseState,
  RegisterWorkerRequestSchema,
  SubmitJobRequestSchema,
  WorkerService,
} from "@dce/proto";
import type { Outcome, Req, SimGrant, SimLeaseCheck, WireError } from "./messages.js";

interface Services {
  readonly jobs: ServiceImpl<typeof JobService>;
  readonly workers: ServiceImpl<typeof WorkerService>;
}

/** The job and worker services of a coordinator, as `routes` registers them on a router. */
export function servicesOf(c: Coordinator): Services {
  const found = new Map<string, unknown>();
  const router = {
    service(desc: { typeName: string }, impl: unknown) {
      found.set(desc.typeName, impl);
      return router;
    },
  };
  c.routes(router as unknown as ConnectRouter);
  return {
    jobs: found.get(JobService.typeName) as Services["jobs"],
    workers: found.get(WorkerService.typeName) as Services["workers"],
  };
}

/**
 * A context for the calls of one run, without a transport: never aborted, no principal
 * (authentication off). Every long-poll of the run listens to its signal, including those
 * of crashed boots, which never end: one signal per run lets them go with the run.
 */
export function plainContext(): HandlerContext {
  const signal = new AbortController().signal;
  setMaxListeners(0, signal);
  return { signal, values: createContextValues() } as unknown as HandlerContext;
}

/** `base` acting as the client `name` whose token weighs `weight`, as the coordinator's auth layer would set it. */
export function clientContext(base: HandlerContext, client: { name: string; weight: number }): HandlerContext {
  const values = createContextValues().set(principalKey, {
    roles: new Set(["client"] as const),
    clientId: client.name,
    clientWeight: client.weight,
  });
  return { signal: base.signal, values } as unknown as HandlerContext;
}

const leaseRef = (l: LeaseKey) => create(LeaseRefSchema, { jobId: l.jobId, shardIndex: l.shardIndex, epoch: BigInt(l.epoch) });
const fromRef = (r: { jobId: string; shardIndex: number; epoch: bigint } | undefined): LeaseKey => ({
  jobId: asJobId(r?.jobId ?? ""),
  shardIndex: r?.shardIndex ?? -1,
  epoch: Number(r?.epoch ?? -1),
});
const STATE: Record<number, SimLeaseCheck["state"]> = {
  [LeaseState.ACTIVE]: "active",
  [LeaseState.CANCELLED]: "cancelled",
  [LeaseState.LOST]: "lost",
};

/**
 * Calls the handler for `req`. Returns (a promise of) its answer as an {@link Outcome};
 * a refusal becomes `{ ok: false }`, anything else thrown is a bug of the shell and
 * propagates.
 */
export function call(s: Services, req: Req, ctx: HandlerContext): Promise<Outcome> {
  const w = s.workers;
  let answer: unknown;
  try {
    answer = invoke(s, w, req, ctx);
  } catch (e) {
    return Promise.resolve(refusal(e));
  }
  return Promise.resolve(answer)
    .then((res) => ({ ok: true as const, value: res }) as Outcome, refusal)
    .then((o) => (o.ok ? readAnswer(req, o.value) : o));
}

function invoke(s: Services, w: Services["workers"], req: Req, ctx: HandlerContext): unknown {
  switch (req.t) {
    case "submit": {
      const { a, b } = req.spec;
      const matmul = {
        a: { rows: a?.rows ?? 0, cols: a?.cols ?? 0, blobId: a?.blobId ?? "" },
        b: { rows: b?.rows ?? 0, cols: b?.cols ?? 0, blobId: b?.blobId ?? "" },
        tileRows: req.spec.tileRows ?? 0,
        tileCols: req.spec.tileCols ?? 0,
        kernel: req.spec.kernel ?? "",
      };
      return s.jobs.submitJob?.(create(SubmitJobRequestSchema, { idempotencyKey: req.key, matmul }), ctx);
    }
    case "register":
      return w.registerWorker?.(
        create(RegisterWorkerRequestSchema, {
          name: req.identity,
          kernels: [{ name: "reference", fingerprint: req.build }],
          threads: req.threads,
        }),
        ctx,
      );
    case "acquire":
      return w.acquireShards?.(
        create(AcquireShardsRequestSchema, { workerId: req.workerId, maxShards: req.maxShards, waitMs: req.waitMs }),
        ctx,
      );
    case "heartbeat":
      return w.heartbeat?.(create(HeartbeatRequestSchema, { workerId: req.workerId, leases: req.leases.map(leaseRef) }), ctx);
    case "complete": {
      const t = req.tile;
      const value = new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
      return w.completeShards?.(
        create(CompleteShardsRequestSchema, {
          workerId: req.workerId,
          results: [{ lease: leaseRef(req.lease), payload: { case: "data", value }, computeMs: 1 }],
        }),
        ctx,
      );
    }
    case "fail":
      return w.failShard?.(
        create(FailShardRequestSchema, {
          workerId: req.workerId,
          lease: leaseRef(req.lease),
          error: req.error,
          release: req.release,
        }),
        ctx,
      );
  }
}

/** A wire answer as the simulated process reads it. */
function readAnswer(req: Req, res: unknown): Outcome {
  switch (req.t) {
    case "submit": {
      const r = res as { jobId: string; created: boolean };
      return { ok: true, value: { jobId: asJobId(r.jobId), created: r.created } };
    }
    case "register":
      return { ok: true, value: { workerId: (res as { workerId: string }).workerId as WorkerId } };
    case "acquire": {
      const leases = (res as { leases: import("@dce/proto").ShardLease[] }).leases;
      const grants: SimGrant[] = leases.map((l) => {
        const t = l.matmul;
        return {
          lease: fromRef(l.lease),
          spec: { a: { blobId: t?.a?.blobId ?? "" }, b: { blobId: t?.b?.blobId ?? "" } },
          bounds: { rowStart: t?.rowStart ?? 0, rowEnd: t?.rowEnd ?? 0, colStart: t?.colStart ?? 0, colEnd: t?.colEnd ?? 0 },
          ttlMs: l.ttlMs,
        };
      });
      return { ok: true, value: grants };
    }
    case "heartbeat": {
      const leases = (res as { leases: import("@dce/proto").LeaseStatus[] }).leases;
      const checks: SimLeaseCheck[] = leases.map((l) => ({
        lease: fromRef(l.lease),
        state: STATE[l.state] ?? "lost",
        ttlMs: l.ttlMs,
      }));
      return { ok: true, value: checks };
    }
    case "complete": {
      const o = (res as { outcomes: { code: number; message: string }[] }).outcomes[0];
      if (o === undefined) return { ok: false, error: { kind: "no-outcome", message: "CompleteShards answered no outcome" } };
      if (o.code === 0) return { ok: true, value: {} };
      return {
        ok: false,
        error: { kind: o.code === Code.NotFound ? "worker-not-found" : (Code[o.code] ?? "?"), message: o.message },
      };
    }
    case "fail":
      return { ok: true, value: {} };
  }
}

/** A refusal as the caller tells it apart: its ErrorInfo reason, as a core error kind. */
function refusal(e: unknown): Outcome {
  if (!(e instanceof ConnectError)) throw e;
  const info = e.findDetails(ErrorInfoSchema)[0];
  let kind: string;
  if (info !== undefined) kind = (ErrorReason[info.reason] ?? "UNKNOWN").toLowerCase().replaceAll("_", "-");
  else kind = e.code === Code.NotFound ? "worker-not-found" : (Code[e.code] ?? "unknown");
  const workerId = info?.metadata["worker_id"];
  const error: WireError = { kind, message: e.rawMessage, ...(workerId === undefined ? {} : { workerId }) };
  return { ok: false, error };
}
