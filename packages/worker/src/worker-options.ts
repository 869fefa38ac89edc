import { hostname } from "node:os";
import type { Transport } from "@connectrpc/connect";
import { defaultCacheBytes, defaultMaxMessageBytes, defaultShutdownGraceMs, minMaxMessageBytes } from "./limits.js";
import type { WorkerLogger } from "./log-scope.js";
import { type HostPort, isWildcardHost, parseHostPort } from "./peer/host-port.js";
import { defaultMaxPeerReads } from "./peer/panel-server.js";
import { defaultPeerTimeoutMs } from "./peer/peer-reader.js";
import type { ComputePool } from "./pool.js";
import type { ReporterDecorator } from "./report/shard-reporter.js";

/** Options for {@link Worker}. Only `coordinatorUrl` is required. */
export interface WorkerOptions {
  /**
   * Coordinator base URL. `https://HOST:PORT` uses TLS verified against `ca` (or the
   * system trust store when `ca` is absent); `http://` is plaintext, for development.
   */
  readonly coordinatorUrl: string;
  /** PEM certificate(s) of the CA that signed the coordinator's certificate. */
  readonly ca?: string | Buffer | undefined;
  /**
   * PEM client certificate presented to the coordinator: signed by its CA with
   * `OU=worker`, its CN is this worker's identity. A coordinator with authentication on
   * refuses worker calls without one (UNAUTHENTICATED). Needs `key`.
   */
  readonly cert?: string | Buffer | undefined;
  /** PEM private key of `cert`. */
  readonly key?: string | Buffer | undefined;
  /** Display name sent on registration; default: the host name. Need not be unique. */
  readonly name?: string | undefined;
  /** Compute threads (and so shards held at once); default `os.availableParallelism()`. Ignored with `pool`. */
  readonly threads?: number | undefined;
  /**
   * Largest gRPC message, in bytes, this worker sends or reads; default 4 MiB. The
   * smaller of this and the coordinator's limit, less 64 KiB of headroom, sizes blob
   * chunks and decides when a tile is uploaded as a blob instead of sent inline.
   */
  readonly maxMessageBytes?: number | undefined;
  /** Byte budget of the input-matrix cache (LRU by blob id); default 1 GiB. 0 disables it. */
  readonly cacheBytes?: number | undefined;
  /**
   * Read input blocks straight from the coordinator's blob files when it offers its store
   * and this process can read it (same host, permission on the data dir); default true.
   * Otherwise, and on any error reading a file, blocks come by ReadBlob.
   */
  readonly useLocalStore?: boolean | undefined;
  /**
   * Leases held beyond one per thread, whose inputs are fetched while the threads
   * compute (pipelining); default adaptive: 1 for large shards, up to 256 for tiny ones.
   * 0 holds exactly one lease per thread.
   */
  readonly prefetch?: number | undefined;
  /**
   * On {@link Worker.close}, how long running shards may take to finish, in
   * milliseconds, before they are aborted and handed back; default 10 000.
   */
  readonly shutdownGraceMs?: number | undefined;
  /**
   * How long, in milliseconds, the coordinator may stay unreachable before the worker
   * gives up with a {@link RetryBudgetExceededError}; default 0, which retries forever.
   */
  readonly retryBudgetMs?: number | undefined;
  /**
   * `HOST:PORT` to serve the input panels this worker holds to its peers on (port 0: a
   * free one); default none. Needs `cert`, `key` and `ca`: peers connect with mutual TLS.
   */
  readonly peerListen?: string | undefined;
  /**
   * `HOST:PORT` the coordinator tells peers to reach the panel server at; default
   * `peerListen` (with the port it got). Required when `peerListen` is 0.0.0.0 or [::].
   */
  readonly peerAdvertise?: string | undefined;
  /**
   * How long a peer may take to be reached (connection and TLS handshake) or stay silent
   * (HTTP/2 PINGs unanswered), in milliseconds, before the worker asks the next peer,
   * then the coordinator; default 3 000. A peer that answers PINGs may take up to
   * `rpcTimeoutMs` per call (it may be loading the panel itself).
   */
  readonly peerTimeoutMs?: number | undefined;
  /** Most peer reads the panel server serves at once (more get RESOURCE_EXHAUSTED); default 8. */
  readonly maxPeerReads?: number | undefined;
  /** Long-poll wait sent with AcquireShards, in milliseconds; default 20 000. */
  readonly acquireWaitMs?: number | undefined;
  /** Deadline of every other RPC, in milliseconds; default 30 000. */
  readonly rpcTimeoutMs?: number | undefined;
  /** Structured logger; default: discard. */
  readonly logger?: WorkerLogger | undefined;
  /** Transport to use instead of a gRPC-over-HTTP/2 one to `coordinatorUrl` (tests: `createRouterTransport`). */
  readonly transport?: Transport | undefined;
  /** Compute pool to use instead of a thread pool; the caller keeps ownership and closes it. */
  readonly pool?: ComputePool | undefined;
  /** Uniform random numbers in [0, 1) for backoff jitter; default `Math.random`. */
  readonly random?: (() => number) | undefined;
  /**
   * Decorates the port through which each computed tile is reported: fault injection
   * lives outside the worker. The `worker` command wraps it with `--chaos-*` faults
   * (`chaosReporter(options)`, exported too). `tools` are the worker's own logger (lines
   * carry the shard's fields) and random source.
   */
  readonly wrapReporter?: ReporterDecorator | undefined;
}

/** {@link WorkerOptions} with every default filled in. */
export interface WorkerConfig {
  readonly coordinatorUrl: string;
  readonly ca: string | Buffer | undefined;
  readonly cert: string | Buffer | undefined;
  readonly key: string | Buffer | undefined;
  readonly name: string;
  readonly threads: number | undefined;
  readonly maxMessageBytes: number;
  readonly cacheBytes: number;
  readonly useLocalStore: boolean;
  readonly prefetch: number | undefined;
  readonly shutdownGraceMs: number;
  readonly retryBudgetMs: number;
  readonly acquireWaitMs: number;
  readonly rpcTimeoutMs: number;
  readonly random: () => number;
  readonly peerListen: HostPort | undefined;
  readonly peerAdvertise: HostPort | undefined;
  readonly peerTimeoutMs: number;
  readonly maxPeerReads: number;
}

/**
 * Fills in the defaults of `o` and checks it.
 *
 * @throws TypeError if `coordinatorUrl` is not an `http:` or `https:` URL, or
 *   RangeError if a numeric option is out of range.
 */
export function resolveConfig(o: WorkerOptions): WorkerConfig {
  const url = new URL(o.coordinatorUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`coordinatorUrl must be http:// or https://, got ${o.coordinatorUrl}`);
  }
  const config: WorkerConfig = {
    coordinatorUrl: o.coordinatorUrl,
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    name: o.name ?? hostname(),
    threads: o.threads,
    maxMessageBytes: o.maxMessageBytes ?? defaultMaxMessageBytes,
    cacheBytes: o.cacheBytes ?? defaultCacheBytes,
    useLocalStore: o.useLocalStore ?? true,
    prefetch: o.prefetch,
    shutdownGraceMs: o.shutdownGraceMs ?? defaultShutdownGraceMs,
    retryBudgetMs: o.retryBudgetMs ?? 0,
    acquireWaitMs: o.acquireWaitMs ?? 20_000,
    rpcTimeoutMs: o.rpcTimeoutMs ?? 30_000,
    random: o.random ?? Math.random,
    ...resolvePeerOptions(o),
  };
  for (const key of ["cacheBytes", "shutdownGraceMs", "retryBudgetMs", "acquireWaitMs"] as const) {
    const v = config[key];
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${key} must be a non-negative integer, got ${v}`);
  }
  if (config.prefetch !== undefined && !(Number.isSafeInteger(config.prefetch) && config.prefetch >= 0)) {
    throw new RangeError(`prefetch must be a non-negative integer, got ${config.prefetch}`);
  }
  if (!Number.isSafeInteger(config.rpcTimeoutMs) || config.rpcTimeoutMs < 1) {
    throw new RangeError(`rpcTimeoutMs must be a positive integer, got ${config.rpcTimeoutMs}`);
  }
  if (!Number.isSafeInteger(config.maxMessageBytes) || config.maxMessageBytes < minMaxMessageBytes) {
    throw new RangeError(`maxMessageBytes must be an integer >= ${minMaxMessageBytes}, got ${config.maxMessageBytes}`);
  }
  if ((config.cert === undefined) !== (config.key === undefined)) throw new TypeError("cert and key go together");
  if (config.threads !== undefined && (!Number.isSafeInteger(config.threads) || config.threads < 1)) {
    throw new RangeError(`threads must be a positive integer, got ${config.threads}`);
  }
  return config;
}

/** The peer options of `o`, parsed. @throws TypeError for a bad address, RangeError for a bad number. */
function resolvePeerOptions(
  o: WorkerOptions,
): Pick<WorkerConfig, "peerListen" | "peerAdvertise" | "peerTimeoutMs" | "maxPeerReads"> {
  const hostPort = (name: string, text: string | undefined): HostPort | undefined => {
    if (text === undefined) return undefined;
    const parsed = parseHostPort(text);
    if (typeof parsed === "string") throw new TypeError(`${name}: ${parsed}`);
    return parsed;
  };
  const peerListen = hostPort("peerListen", o.peerListen);
  const peerAdvertise = hostPort("peerAdvertise", o.peerAdvertise);
  if (peerListen !== undefined && peerAdvertise === undefined && isWildcardHost(peerListen.host)) {
    throw new TypeError(
      `peerListen ${o.peerListen} listens on every interface: give peerAdvertise, the address peers reach it at`,
    );
  }
  if (peerAdvertise !== undefined && (peerAdvertise.port === 0 || isWildcardHost(peerAdvertise.host))) {
    throw new TypeError(`peerAdvertise must be an address peers can dial, got ${o.peerAdvertise}`);
  }
  const peerTimeoutMs = o.peerTimeoutMs ?? defaultPeerTimeoutMs;
  const maxPeerReads = o.maxPeerReads ?? defaultMaxPeerReads;
  for (const [key, v] of [
    ["peerTimeoutMs", peerTimeoutMs],
    ["maxPeerReads", maxPeerReads],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${key} must be a positive integer, got ${v}`);
  }
  return { peerListen, peerAdvertise, peerTimeoutMs, maxPeerReads };
}

export function threadsOption(threads: number | undefined): { threads?: number } {
  return threads === undefined ? {} : { threads };
}
