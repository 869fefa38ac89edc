// The simulated clients: one per job, submitting it at its time and again (same
// idempotency key) until a reply names the job. They never cancel.
import type { JobId } from "@dce/core";
import type { JobPlan } from "../scenario.js";
import type { Outcome, Req } from "./messages.js";
import type { World } from "./world.js";

export interface SimClient {
  readonly plan: JobPlan;
  jobId: JobId | undefined;
  pendingReqId: number | undefined;
}

export class SimClients {
  readonly all: SimClient[];

  /** @param plans the jobs, with their inputs' blob ids as the coordinator's blob store names them. */
  constructor(
    private readonly world: World,
    plans: readonly JobPlan[],
  ) {
    this.all = plans.map((plan) => ({ plan, jobId: undefined, pendingReqId: undefined }));
  }

  send(job: number): void {
    const cl = this.all[job];
    const w = this.world;
    if (!cl || cl.jobId !== undefined) return;
    const reqId = ++w.reqSeq;
    cl.pendingReqId = reqId;
    const req: Req = { t: "submit", key: cl.plan.key, spec: cl.plan.spec, ...(cl.plan.client ? { client: cl.plan.client } : {}) };
    w.net.transmit({ k: "to-coord", env: { reqId, from: { kind: "client", job }, req } }, `client${job} submit #${reqId}`);
    w.at(w.sc.rpcTimeoutMs * 2, { k: "client-timeout", job, reqId });
  }

  onTimeout(job: number, reqId: number): void {
    const cl = this.all[job];
    if (cl && cl.pendingReqId === reqId) this.send(job);
  }

  onReply(job: number, reqId: number, outcome: Outcome): void {
    const cl = this.all[job];
    if (!cl || cl.pendingReqId !== reqId) return;
    cl.pendingReqId = undefined;
    if (!outcome.ok) this.world.oracle.fail(`submit of ${cl.plan.key} refused: ${outcome.error.kind} ${outcome.error.message}`);
    cl.jobId = (outcome.value as { jobId: JobId }).jobId;
  }
}
