import { createClient, type Transport } from "@connectrpc/connect";
import { BlobService, WorkerService } from "@dce/proto";
import { createBlobTransfer } from "@dce/runtime/blob-transfer";
import { errorMessage, ShardStopped, toError } from "./errors.js";
import { type BlobCache, createBlobCache } from "./inputs/blob-cache.js";
import { type InputBytes, InputFetcher } from "./inputs/input-fetcher.js";
import { raceAbort } from "./internal/abort.js";
import { scopedLogger, shardScope, silentLogger, type WorkerLogger } from "./log-scope.js";
import { type PeerPlane, startPeerPlane } from "./peer/peer-plane.js";
import { type ComputePool, createThreadPool } from "./pool.js";
import { Heartbeat } from "./pull/heartbeat.js";
import { PullLoop } from "./pull/pull-loop.js";
import type { ShardRun } from "./pull/shard.js";
import { CompletionReporter } from "./report/completion.js";
import { ReportBatcher } from "./report/report-batcher.js";
import { ShardFailures } from "./report/shard-failures.js";
import type { ReporterDecorator } from "./report/shard-reporter.js";
import { Session } from "./session/session.js";
import { createBulkChannel, createTransport } from "./transport.js";
import { resolveConfig, threadsOption, type WorkerConfig, type WorkerOptions } from "./worker-options.js";

/** The rooms of a started worker. */
interface Parts {
  readonly session: Session;
  readonly pull: PullLoop;
  readonly heartbeat: Heartbeat;
  readonly failures: ShardFailures;
  readonly inputs: InputFetcher;
}

/**
 * A dce worker: registers with a coordinator, pulls shard leases (one per compute
 * thread), fetches the input rows and column panel, multiplies them in a
 * `worker_threads` pool, and reports each tile. Leases are renewed by heartbeat;
 * a lease the coordinator reports CANCELLED or LOST is abandoned at once (its thread
 * is terminated). Connection failures are retried with capped, jittered exponential
 * backoff, and a coordinator restart (NOT_FOUND for the worker id) leads to a fresh
 * registration. The event loop only moves bytes; all arithmetic runs in threads.
 *
 * Lifecycle: `start()` → runs until `close()` (drain) or a fatal error; `wait()`
 * tells which.
 *
 * @example
 * <!-- docs-test: serves for 3 s -->
 * <!-- docs-test: prelude
 * import { readFileSync } from "node:fs";
 * import { Worker } from "@dce/worker";
 * const [pem, cert, key] = ["ca.pem", "worker-1.pem", "worker-1-key.pem"].map((f) => readFileSync(f));
 * const logger = { debug() {}, info() {}, warn: console.log, error: console.log };
 * -->
 * ```ts
 * const worker = new Worker({ coordinatorUrl: "https://127.0.0.1:7070", ca: pem, cert, key, logger });
 * await worker.start();
 * process.once("SIGTERM", () => void worker.close());
 * await worker.wait();
 * ```
 */
export class Worker {
  readonly #config: WorkerConfig;
  readonly #log: WorkerLogger;
  readonly #transport: Transport | undefined;
  readonly #injectedPool: ComputePool | undefined;
  readonly #wrapReporter: ReporterDecorator | undefined;
  readonly #cache: BlobCache;
  #pool: ComputePool | undefined;
  /** The panel server and peer reader, started before registration. */
  #peers: PeerPlane | undefined;
  /** The worker's rooms, made by start() once there is a transport. */
  #parts: Parts | undefined;

  /** Aborted by close(): stop acquiring, abort a pending long-poll. */
  readonly #drain = new AbortController();
  /** Aborted when everything must stop now: after the drain, or on a fatal error. */
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];
  #fatal: Error | undefined;

  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  readonly #stopped: Promise<void>;
  #settleStopped!: (error: Error | undefined) => void;

  /**
   * Creates a worker; it does nothing until {@link Worker.start}.
   *
   * @throws TypeError if `coordinatorUrl` is not an `http:` or `https:` URL, or
   *   RangeError if a numeric option is out of range.
   */
  constructor(options: WorkerOptions) {
    this.#config = resolveConfig(options);
    this.#log = scopedLogger(options.logger ?? silentLogger);
    this.#transport = options.transport;
    this.#injectedPool = options.pool;
    this.#wrapReporter = options.wrapReporter;
    this.#cache = createBlobCache({ budgetBytes: this.#config.cacheBytes });
    this.#stopped = new Promise<void>((resolve, reject) => {
      this.#settleStopped = (error) => (error === undefined ? resolve() : reject(error));
    });
    this.#stopped.catch(() => {}); // observed through wait(); never an unhandled rejection
  }

  /** The id the coordinator gave this worker; `undefined` before registration. Opaque. */
  get workerId(): string | undefined {
    return this.#parts?.session.workerId;
  }

  /** Input bytes received so far: from peers, and from the coordinator. */
  get inputBytes(): InputBytes {
    return this.#parts?.inputs.bytesBySource ?? { peer: 0, coordinator: 0 };
  }

  /** Number of shards held right now (fetching, computing, or reporting). */
  get activeShards(): number {
    return this.#parts?.pull.runs.size ?? 0;
  }

  /**
   * Connects, registers (retrying while the coordinator is unreachable), and starts the
   * pull and heartbeat loops in the background. Resolves once registered, or without
   * registering if {@link Worker.close} is called first. Calling it again returns the
   * same promise.
   *
   * @throws RetryBudgetExceededError if the coordinator stays unreachable past the
   *   budget, or the ConnectError of a registration the coordinator refuses (e.g.
   *   PERMISSION_DENIED). The worker is then stopped.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /**
   * Drains and stops: no new leases are taken and a pending long-poll is aborted;
   * running shards get `shutdownGraceMs` to finish and report, after which they are
   * aborted and their leases handed back (FailShard `release: true`); then the
   * heartbeat stops and the threads end. Never rejects; every step runs even if one
   * fails. Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Resolves when the worker has stopped after {@link Worker.close}; rejects with the
   * error that stopped it otherwise (e.g. {@link RetryBudgetExceededError}).
   */
  wait(): Promise<void> {
    return this.#stopped;
  }

  async #start(): Promise<void> {
    if (this.#drain.signal.aborted) return;
    const transport = this.#transport ?? createTransport(this.#config);
    this.#pool = this.#injectedPool ?? createThreadPool(threadsOption(this.#config.threads));
    try {
      this.#peers = await startPeerPlane(this.#config, this.#cache, this.#log);
    } catch (e) {
      const error = toError(e, "starting the panel server for peers");
      this.#fail(error);
      throw error;
    }
    const parts = this.#makeParts(transport, this.#pool, this.#peers);
    this.#parts = parts;
    try {
      await parts.session.register(this.#drain.signal);
    } catch (e) {
      if (this.#drain.signal.aborted && this.#fatal === undefined) return; // closed while connecting
      const error = toError(e);
      this.#fail(error);
      throw error;
    }
    this.#loops = [parts.pull.run(), parts.heartbeat.run()];
  }

  /** Wires the rooms together: session, input fetcher, report path, pull loop, heartbeat. */
  #makeParts(transport: Transport, pool: ComputePool, peers: PeerPlane): Parts {
    const config = this.#config;
    const log = this.#log;
    const rpc = createClient(WorkerService, transport);
    const isFatal = () => this.#fatal !== undefined;
    const fail = (error: Error) => this.#fail(error);
    const stopSignal = this.#stop.signal;
    const peerAddress = peers.advertisedAddress;
    const session = new Session({ config, log, rpc, threads: pool.size, peerAddress, stopSignal, isFatal, fail });
    // Matrix bytes on a connection of their own, unless the caller gave the transport (tests).
    const bulk = this.#transport === undefined ? { bulk: createBulkChannel(config) } : {};
    const transfer = createBlobTransfer(createClient(BlobService, transport), {
      chunkBytes: () => session.chunkLimitBytes(),
      ...bulk,
    });
    const { rpcTimeoutMs, random } = config;
    const cacheBytes = config.cacheBytes;
    const inputs = new InputFetcher({
      session,
      transfer,
      cache: this.#cache,
      cacheBytes,
      rpcTimeoutMs,
      log,
      peers: peers.reader,
    });
    const batcher = new ReportBatcher({ rpc, session, rpcTimeoutMs, stopSignal });
    const completion = new CompletionReporter({ session, batcher, transfer, rpcTimeoutMs, random, log, isFatal });
    const reporter = this.#wrapReporter?.(completion, { log, random }) ?? completion;
    const failures = new ShardFailures(rpc, session, log);
    const drainSignal = this.#drain.signal;
    const pullDeps = { config, log, rpc, session, pool, inputs, reporter, failures, drainSignal, stopSignal, isFatal, fail };
    const pull = new PullLoop(pullDeps);
    const heartbeat = new Heartbeat({ rpc, session, runs: pull.runs, log, stopSignal, isFatal });
    return { session, pull, heartbeat, failures, inputs };
  }

  /** Stops the worker because of an error it cannot recover from; wait() rejects with it. */
  #fail(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    // The whole worker stops, whichever shard's call found out: no shard scope on these lines.
    shardScope.exit(() => {
      this.#log.error({ err: error.message }, "worker stopping after a fatal error");
      this.#stop.abort(error);
      void this.close();
    });
  }

  async #close(): Promise<void> {
    const step = async (name: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (e) {
        this.#log.warn({ step: name, err: errorMessage(e) }, "shutdown step failed");
      }
    };
    const runs = (): ShardRun[] => [...(this.#parts?.pull.runs.values() ?? [])];
    const atDrain = runs().length;
    let unfinished = 0;
    if (this.#fatal === undefined) this.#log.info({ activeShards: this.activeShards }, "draining");
    this.#drain.abort(new ShardStopped("worker is draining"));
    this.#parts?.pull.wake();
    await step("wait for start", async () => {
      await this.#starting?.catch(() => {});
    });

    // Give running shards the grace period (cut short by a fatal error).
    await step("finish running shards", async () => {
      const finished = Promise.all(runs().map((r) => r.done));
      await raceAbort(finished, AbortSignal.any([AbortSignal.timeout(this.#config.shutdownGraceMs), this.#stop.signal])).catch(
        () => {},
      );
    });

    // Whatever is still running is aborted; unless the coordinator is gone, its lease goes back.
    await step("hand back unfinished leases", async () => {
      const left = runs();
      unfinished = left.length;
      for (const run of left) run.abort.abort(new ShardStopped("shutdown grace period over"));
      const failures = this.#parts?.failures;
      if (left.length > 0 && this.#fatal === undefined && failures !== undefined) {
        this.#log.info({ leases: left.length }, "handing back unfinished leases");
        await Promise.all(left.map((run) => failures.handBack(run.lease, "worker shut down before finishing")));
      }
      await Promise.all(left.map((r) => r.done));
    });

    await step("stop loops", async () => {
      this.#stop.abort(new ShardStopped("worker stopped"));
      await Promise.all(this.#loops);
    });
    await step("stop the panel server", async () => {
      await this.#peers?.close();
    });
    await step("close pool", async () => {
      if (this.#injectedPool === undefined) await this.#pool?.close();
    });
    if (this.#fatal === undefined) {
      // Say what became of the work it held: finished and reported, or handed back to be run elsewhere.
      const handBacks = this.#parts?.failures.handBacks ?? { done: 0, lost: 0 };
      const finished = Math.max(0, atDrain - unfinished);
      this.#log.info(
        {
          workerId: this.workerId,
          shardsFinishedWhileDraining: finished,
          leasesHandedBack: handBacks.done,
          handBacksLost: handBacks.lost,
          // Where input panels came from, and what peers read here: the data plane's traffic.
          inputBytesFromPeers: this.inputBytes.peer,
          inputBytesFromCoordinator: this.inputBytes.coordinator,
          bytesServedToPeers: this.#peers?.servedBytes ?? 0,
        },
        `worker stopped: ${plural(finished, "shard")} finished while draining, ${plural(handBacks.done, "lease")} handed back` +
          (handBacks.lost > 0 ? `, ${plural(handBacks.lost, "hand-back")} not delivered (those leases run out)` : ""),
      );
    }
    this.#settleStopped(this.#fatal);
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
