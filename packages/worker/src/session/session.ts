import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { WorkerService } from "@dce/proto";
import { accessLocalStore, type LocalStoreAccess } from "@dce/runtime/local-store";
import { RetryBudgetExceededError } from "../errors.js";
import { sleepMs } from "../internal/abort.js";
import { backoffDelayMs } from "../internal/backoff.js";
import { listKernels } from "../kernels/kernel.js";
import { shardScope, type WorkerLogger } from "../log-scope.js";
import type { WorkerConfig } from "../worker-options.js";
import { isWorkerNotFound } from "./is-worker-not-found.js";
import { isTransient } from "./transient.js";

/** How one RPC is retried by {@link Session.retry}. */
export interface RetryPolicy {
  /** Aborting stops the retries (the last error is thrown). */
  readonly signal: AbortSignal;
  /**
   * The call carries the worker id: a NOT_FOUND whose reason is `WORKER_NOT_FOUND` means
   * "register again", then retry (any other NOT_FOUND, e.g. an unknown job, is thrown).
   */
  readonly workerScoped: boolean;
  /** Stop retrying transient errors once this returns true. */
  readonly giveUp?: () => boolean;
  /** Most attempts, counting the first; default unlimited. */
  readonly maxAttempts?: number;
}

/** What a {@link Session} needs of the worker around it. */
export interface SessionDeps {
  readonly config: WorkerConfig;
  readonly log: WorkerLogger;
  readonly rpc: Client<typeof WorkerService>;
  /** Compute threads, announced on registration. */
  readonly threads: number;
  /** Where peers reach this worker's panel server, announced on registration; "" for none. */
  readonly peerAddress: string;
  /** Aborted when everything must stop now; a re-registration runs until then. */
  readonly stopSignal: AbortSignal;
  /** Whether the worker already stopped on a fatal error (no more retries then). */
  readonly isFatal: () => boolean;
  /** Stops the worker for good (the retry budget ran out). */
  readonly fail: (error: Error) => void;
}

/** Room left in each message for everything but the payload bytes. */
const messageHeadroomBytes = 64 * 1024;

/**
 * The worker's standing with its coordinator: registration (the worker id, the lease
 * TTL and heartbeat interval, the message limit and the local store the coordinator
 * announced), registering again after a coordinator restart, and the retry rules every
 * RPC goes through.
 */
export class Session {
  readonly #d: SessionDeps;
  #workerId: string | undefined;
  #leaseTtlMs = 0;
  #heartbeatIntervalMs = 0;
  #coordinatorMaxMessageBytes = 0;
  /** The coordinator's blob store, when it is offered and readable from here. */
  #localStore: LocalStoreAccess | undefined;
  /** Whether the coordinator reads result tiles staged in that store. */
  #acceptsStagedTiles = false;
  #registering: Promise<void> | undefined;
  #unreachableSinceMs: number | undefined;

  constructor(deps: SessionDeps) {
    this.#d = deps;
  }

  /** The id the coordinator gave this worker; `undefined` before registration. */
  get workerId(): string | undefined {
    return this.#workerId;
  }

  /** Lease lifetime the coordinator announced, in milliseconds (0 before registration). */
  get leaseTtlMs(): number {
    return this.#leaseTtlMs;
  }

  /** The coordinator's blob store, when offered, enabled and readable from here. */
  get localStore(): LocalStoreAccess | undefined {
    return this.#localStore;
  }

  /** Whether result tiles may be staged in {@link localStore}: it is reachable and the coordinator reads staged tiles. */
  get acceptsStagedTiles(): boolean {
    return this.#acceptsStagedTiles && this.#localStore !== undefined;
  }

  /** Registers, retrying while the coordinator is unreachable, until `signal` aborts. */
  async register(signal: AbortSignal): Promise<void> {
    const { config, log, rpc, threads, peerAddress } = this.#d;
    const kernels = listKernels().map((k) => ({ name: k.name, fingerprint: k.fingerprint }));
    const res = await this.retry(
      "RegisterWorker",
      () => rpc.registerWorker({ name: config.name, kernels, threads, peerAddress }, { signal, timeoutMs: config.rpcTimeoutMs }),
      { signal, workerScoped: false },
    );
    this.#workerId = res.workerId;
    this.#leaseTtlMs = res.leaseTtlMs;
    this.#heartbeatIntervalMs = res.heartbeatIntervalMs;
    this.#coordinatorMaxMessageBytes = res.maxMessageBytes;
    this.#localStore = config.useLocalStore ? accessLocalStore(res.localStore) : undefined;
    this.#acceptsStagedTiles = res.localStore?.acceptsStagedTiles === true;
    log.info(
      {
        workerId: res.workerId,
        workerName: config.name,
        threads,
        kernels: kernels.map((k) => k.fingerprint),
        coordinator: config.coordinatorUrl,
        leaseTtlMs: res.leaseTtlMs,
        heartbeatIntervalMs: res.heartbeatIntervalMs,
        maxMessageBytes: this.messageLimitBytes(),
        // Where input blocks come from: the coordinator's files on this host, or ReadBlob.
        inputs: this.#localStore ? `local store ${this.#localStore.dir}` : "ReadBlob",
        ...(peerAddress === "" ? {} : { peerAddress }),
      },
      "worker registered",
    );
  }

  /**
   * Registers again after the coordinator forgot `staleWorkerId` (it restarted). Calls
   * that saw the same NOT_FOUND share one registration; one that arrives after it
   * already happened returns at once and simply retries with the new id.
   */
  async reregister(staleWorkerId: string): Promise<void> {
    if (this.#workerId !== staleWorkerId && this.#registering === undefined) return;
    if (this.#registering === undefined) {
      // About the worker, not the shard whose call noticed it.
      shardScope.exit(() => {
        this.#d.log.info({ workerId: staleWorkerId }, "coordinator does not know this worker; registering again");
        this.#registering = this.register(this.#d.stopSignal).finally(() => {
          this.#registering = undefined;
        });
      });
    }
    await this.#registering;
  }

  /**
   * Runs one RPC with the worker's retry rules: NOT_FOUND with reason `WORKER_NOT_FOUND`
   * (the coordinator does not know the worker id) → register again and retry; transient failures (UNAVAILABLE, network errors,
   * deadlines, overload) → jittered exponential backoff, charged against the retry
   * budget; anything else is thrown. `call` gets the current worker id.
   */
  async retry<T>(what: string, call: (workerId: string) => Promise<T>, policy: RetryPolicy): Promise<T> {
    const { random } = this.#d.config;
    for (let attempt = 0; ; attempt++) {
      const workerId = this.#workerId ?? "";
      try {
        const out = await call(workerId);
        this.#unreachableSinceMs = undefined;
        return out;
      } catch (e) {
        if (policy.signal.aborted || this.#d.isFatal()) throw e;
        const err = ConnectError.from(e);
        const lastTry = policy.maxAttempts !== undefined && attempt + 1 >= policy.maxAttempts;
        if (policy.workerScoped && err.code === Code.NotFound && isWorkerNotFound(err)) {
          await this.reregister(workerId);
          if (lastTry) throw err;
          // A coordinator that keeps forgetting us right after registering must not spin.
          if (attempt > 0) await sleepMs(backoffDelayMs(attempt, random), policy.signal);
          continue;
        }
        if (!isTransient(err)) throw err;
        this.#noteUnreachable(err);
        if (lastTry || policy.giveUp?.()) throw err;
        const delayMs = backoffDelayMs(attempt, random);
        this.#d.log.warn(
          { rpc: what, code: Code[err.code], err: err.rawMessage, attempt: attempt + 1, retryInMs: Math.round(delayMs) },
          "coordinator call failed; retrying",
        );
        await sleepMs(delayMs, policy.signal);
        if (policy.signal.aborted) throw err;
      }
    }
  }

  /** Charges a failed call against the retry budget; fails the worker once it is spent. */
  #noteUnreachable(err: ConnectError): void {
    const nowMs = Date.now();
    this.#unreachableSinceMs ??= nowMs;
    const budgetMs = this.#d.config.retryBudgetMs;
    if (budgetMs > 0 && nowMs - this.#unreachableSinceMs >= budgetMs) {
      const fatal = new RetryBudgetExceededError(budgetMs, err);
      this.#d.fail(fatal);
      throw fatal;
    }
  }

  /** Largest message both sides accept. */
  messageLimitBytes(): number {
    return Math.min(this.#d.config.maxMessageBytes, this.#coordinatorMaxMessageBytes || Number.POSITIVE_INFINITY);
  }

  /** Largest payload per message: {@link Session.messageLimitBytes} less headroom for the envelope. */
  chunkLimitBytes(): number {
    const limit = this.messageLimitBytes();
    return limit > 2 * messageHeadroomBytes ? limit - messageHeadroomBytes : Math.floor(limit / 2);
  }

  /** How often leases are renewed, in milliseconds. */
  heartbeatPeriodMs(): number {
    if (this.#heartbeatIntervalMs > 0) return this.#heartbeatIntervalMs;
    // The coordinator gave no interval: renew three times per lease lifetime.
    return this.#leaseTtlMs > 0 ? Math.max(10, Math.floor(this.#leaseTtlMs / 3)) : 1_000;
  }
}
