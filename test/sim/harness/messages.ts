// What travels between the simulated processes and the real coordinator, and the events
// of the simulation's queue. Replies come back as core-shaped outcomes (`Result`), turned
// from the wire answers by the coordinator driver, so the simulated workers read like the
// real worker's decisions.
import type { JobId, LeaseKey, MatMulSpecInput, TileBounds, WorkerId } from "@dce/core";
import type { Fingerprint } from "../matrix.js";
import type { Fault } from "../scenario.js";

export type Req =
  | { t: "submit"; key: string; spec: MatMulSpecInput; client?: { name: string; weight: number } }
  | { t: "register"; build: Fingerprint; threads: number; identity: string }
  | { t: "acquire"; workerId: WorkerId; maxShards: number; waitMs: number }
  | { t: "heartbeat"; workerId: WorkerId; leases: LeaseKey[] }
  | { t: "complete"; workerId: WorkerId; lease: LeaseKey; tile: Float64Array }
  | { t: "fail"; workerId: WorkerId; lease: LeaseKey; error: string; release: boolean };

/** Who sent a request: a client (job index) or one worker process (slot + incarnation). */
export type From = { kind: "client"; job: number } | { kind: "worker"; slot: number; inc: number };

export interface Envelope {
  readonly reqId: number;
  readonly from: From;
  readonly req: Req;
}

/** A refusal as the caller tells it apart: the ErrorInfo reason as a core error kind, and the worker it names. */
export interface WireError {
  readonly kind: string;
  readonly workerId?: string;
  readonly message: string;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: WireError };

/** A lease as a worker holds it after AcquireShards. */
export interface SimGrant {
  readonly lease: LeaseKey;
  readonly spec: { a: { blobId: string }; b: { blobId: string } };
  readonly bounds: TileBounds;
  readonly ttlMs: number;
}

/** A lease's state in a heartbeat answer. */
export interface SimLeaseCheck {
  readonly lease: LeaseKey;
  readonly state: "active" | "cancelled" | "lost";
  readonly ttlMs: number;
}

export type SimEvent =
  | { k: "to-coord"; env: Envelope }
  | { k: "reply"; to: From; reqId: number; outcome: Outcome }
  | { k: "client-send"; job: number }
  | { k: "client-timeout"; job: number; reqId: number }
  | { k: "worker-start"; slot: number }
  | { k: "worker-heartbeat"; slot: number; inc: number }
  | { k: "worker-poll"; slot: number; inc: number }
  | { k: "worker-register"; slot: number; inc: number }
  | { k: "worker-computed"; slot: number; inc: number; key: string }
  | { k: "worker-timeout"; slot: number; inc: number; reqId: number }
  | { k: "coord-fsync"; inc: number }
  | { k: "coord-restart" }
  | { k: "fault"; fault: Fault }
  | { k: "calm" };

export const leaseKeyOf = (l: LeaseKey): string => `${l.jobId}/${l.shardIndex}@${l.epoch}`;

/** The client identity of every job: the coordinator runs without authentication. */
export const CLIENT_ID = "anonymous";

/** The key the core and the oracle give an idempotency key of the client. */
export const clientKeyOf = (idempotencyKey: string, clientId: string = CLIENT_ID): string => `${clientId}\u0000${idempotencyKey}`;

export type { JobId };
