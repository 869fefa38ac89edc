import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import type { TLSSocket } from "node:tls";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type CoreConfig, DEFAULT_CORE_CONFIG, DEFAULT_SPEC_LIMITS, type SpecLimits } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import { http2ServerWindowSettings, widenServerConnectionWindow } from "@dce/runtime/http2";
import { createLogger } from "@dce/runtime/logging";
import type { Logger } from "pino";
import { createAuthenticator } from "./auth.js";
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS, guardConnections } from "./connection-guard.js";
import { Coordinator, type CoordinatorConfig } from "./coordinator.js";
import { createErrorBoundary, INTERNAL_MESSAGE } from "./error-boundary.js";
import { dceError } from "./errors.js";
import type { CrashPoint } from "./journal.js";
import { createDashboard } from "./observability/dashboard.js";
import { registerHealthService } from "./observability/health.js";
import { type CoordinatorMetrics, createCoordinatorMetrics } from "./observability/metrics.js";
import { createOpsHttpHandler, type OpsGuard } from "./observability/ops-http.js";
import { registerReflectionService } from "./observability/reflection.js";
import type { FatalHandler } from "./ports/coordinator-ports.js";
import { type RetentionOptions, resolveRetention } from "./retention-options.js";
import { createRpcHandler } from "./rpc-handler.js";
import { resolveStorageOptions, type StorageOptions } from "./storage-options.js";
import { loadServerTls, type ServerTlsFiles } from "./tls-dir.js";
import { TokenStore, tokenFilePath } from "./tokens.js";
import { defaultVerifyThreads } from "./verify/verifier.js";

/** Options for {@link startCoordinator}; every field has a default. */
export interface CoordinatorOptions extends RetentionOptions, StorageOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** Port; 0 picks a free one. Default 7070. */
  port?: number;
  /**
   * Folder holding `server.pem` and `server-key.pem`, and `ca.pem`, the CA that worker
   * certificates must chain to (from `coordinator init-certs`). Required unless `insecure`.
   */
  tlsDir?: string;
  /** Serve plaintext HTTP/2, without authentication (development; loopback hosts only). Default false. */
  insecure?: boolean;
  /**
   * Turn authentication off (development; loopback hosts only): no client certificates,
   * no tokens, every caller holds every role and all jobs belong to one anonymous
   * client. Default false: workers need a CA-signed certificate and clients a token.
   */
  devNoAuth?: boolean;
  /** Folder for blobs, result buffers, the journal and `tokens.json`. Default "./.dce-data". */
  dataDir?: string;
  /** Lease lifetime in ms. Default 10 000. */
  leaseTtlMs?: number;
  /** Reported failures (and rejected results) of one shard before its job fails. Default 5. */
  maxAttempts?: number;
  /**
   * Deaths of workers running one shard after which its job fails whatever the fleet does;
   * fewer fail it when its deaths stand out from the fleet's (core `poison.ts`). 0: deaths
   * never fail a job. Default 32.
   */
  maxShardDeaths?: number;
  /** Largest message read or written, in bytes. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Longest long-poll in ms. Default 30 000. */
  maxLongPollMs?: number;
  /** Largest deadline (grpc-timeout) a call may ask for, in ms; a longer one is INVALID_ARGUMENT. Default 24 h. */
  maxDeadlineMs?: number;
  /** Tile edge used when a job leaves it 0. Default 256. */
  defaultTile?: number;
  /** Overrides of the job limits (maxDim, maxMatrixBytes, maxJobBytes, maxTileBytes, maxShardsPerJob). */
  limits?: Partial<SpecLimits>;
  /** Jobs queued or running at once. Default 1000. */
  maxActiveJobs?: number;
  /** Jobs one client may have queued or running at once. Default 256. */
  maxActiveJobsPerClient?: number;
  /** Most leases one AcquireShards returns. Default 1024. */
  maxShardsPerAcquire?: number;
  /** Blob uploads open at once. Default 64. */
  maxOpenUploads?: number;
  /** An upload without a chunk for this long is dropped, in ms. Default 600 000. */
  uploadIdleMs?: number;
  /** Connections open at once. Default 1024. */
  maxConnections?: number;
  /**
   * Check every worker result with Freivalds' test before accepting it. Default true;
   * false accepts results unchecked (trusted workers only). See docs/verification.md.
   */
  verify?: boolean;
  /** Threads that check results. Default: a quarter of the cores, 1 to 4. */
  verifyThreads?: number;
  /**
   * Offer the blob store to workers and clients on this host (default true): those that
   * can read the data dir move matrix bytes through files instead of RPCs. See docs/limits.md.
   */
  localStore?: boolean;
  /** Results failing verification after which a worker identity is quarantined; 0 = never. Default 3. */
  quarantineAfter?: number;
  /** Concurrent HTTP/2 streams per connection. Default 256. */
  maxConcurrentStreams?: number;
  /** Time to complete the TLS handshake and open a first stream, in ms. Default 10 000. */
  handshakeTimeoutMs?: number;
  /** A connection without an open stream this long is closed, in ms. Default 60 000. */
  idleTimeoutMs?: number;
  /** A unary request must arrive whole this long after its headers, in ms. Default 60 000. */
  requestTimeoutMs?: number;
  /** Interval of the coordinator's keepalive pings on each connection, in ms. Default 30 000. */
  keepaliveIntervalMs?: number;
  /** A connection whose ping goes unanswered this long is closed, in ms. Default 10 000. */
  keepaliveTimeoutMs?: number;
  /** fsync the journal and data files (default true). Turn off only in tests that never crash. */
  fsync?: boolean;
  /** Fault injection for crash-point tests only: SIGKILL at a named step of accepting a result. */
  testCrashAt?: CrashPoint;
  /**
   * Called once when the journal cannot be written (memory is ahead of disk), after the
   * waiting calls are answered. The `coordinator` bin exits 70 so that a restart recovers
   * from the journal. Default: the coordinator stops serving (as `close()`), so no caller
   * is answered from a memory ahead of its disk; opening it again recovers.
   */
  onFatal?: FatalHandler;
  /** Logger; default JSON lines to stderr at "info", credentials redacted (see `createLogger`). */
  logger?: Logger;
  /** Serve Prometheus metrics at `GET /metrics`. Default true. */
  metrics?: boolean;
  /** Include the Node process metrics (`process_*`, `nodejs_*`) in `/metrics`. Default true. */
  processMetrics?: boolean;
  /** Serve the read-only live dashboard at `GET /ui`. Default true. */
  ui?: boolean;
  /**
   * Extra access control for the plain-HTTP endpoints (`/ui`, `/metrics`, `/healthz`),
   * checked after the access table (`access.ts`): return false to answer 403.
   */
  opsGuard?: OpsGuard;
}

/** A running coordinator server. */
export interface RunningCoordinator {
  /** Base URL clients and workers use, e.g. `https://127.0.0.1:7070`. */
  readonly url: string;
  readonly port: number;
  readonly coordinator: Coordinator;
  /** True when client certificates and tokens are checked (not `insecure` or `devNoAuth`). */
  readonly auth: boolean;
  /**
   * This coordinator's Prometheus metrics (its own registry). The journal reports each
   * commit through `metrics.observeJournalWriteMs(ms, records)`.
   */
  readonly metrics: CoordinatorMetrics;
  /** Drains, closes connections and stops. Idempotent. */
  close(): Promise<void>;
}

/** Default largest message: 4 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Default largest call deadline: 24 h. */
export const DEFAULT_MAX_DEADLINE_MS = 24 * 3_600_000;

/** The data dir when none is given: `coordinator` and `coordinator tokens` share it, like `DCE_DATA_DIR`. */
export const DEFAULT_DATA_DIR = ".dce-data";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** True when `host` only accepts connections from this machine (a name or address, not a wildcard). */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** An integer option at least `min`, or its default; a RangeError names a bad one. */
function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name}=${v}; it must be an integer >= ${min}`);
  return v;
}

/** Resolves options to a complete config. Throws a RangeError naming a bad option. */
export function resolveConfig(o: CoordinatorOptions): CoordinatorConfig {
  const maxMessageBytes = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 256 * 1024) {
    throw new RangeError(`maxMessageBytes=${maxMessageBytes}; it must be at least 262144`);
  }
  const leaseTtlMs = o.leaseTtlMs ?? DEFAULT_CORE_CONFIG.leaseTtlMs;
  if (!Number.isInteger(leaseTtlMs) || leaseTtlMs < 100)
    throw new RangeError(`leaseTtlMs=${leaseTtlMs}; it must be at least 100`);
  const limits: SpecLimits = {
    ...DEFAULT_SPEC_LIMITS,
    ...(o.defaultTile ? { defaultTile: o.defaultTile } : {}),
    ...o.limits,
  };
  for (const key of ["maxDim", "maxMatrixBytes", "maxJobBytes", "maxTileBytes", "maxShardsPerJob"] as const) {
    intOption(key, limits[key], 1, 1);
  }
  // 0 picks the tile shape automatically.
  intOption("defaultTile", limits.defaultTile, 0, 0);
  const verifyThreads = intOption("verifyThreads", o.verifyThreads, defaultVerifyThreads(), 1);
  const quarantineAfter = intOption("quarantineAfter", o.quarantineAfter, DEFAULT_CORE_CONFIG.quarantineAfterRejections, 0);
  const core: CoreConfig = {
    ...DEFAULT_CORE_CONFIG,
    leaseTtlMs,
    maxAttempts: o.maxAttempts ?? DEFAULT_CORE_CONFIG.maxAttempts,
    maxShardDeaths: intOption("maxShardDeaths", o.maxShardDeaths, DEFAULT_CORE_CONFIG.maxShardDeaths, 0),
    maxActiveJobs: intOption("maxActiveJobs", o.maxActiveJobs, DEFAULT_CORE_CONFIG.maxActiveJobs, 1),
    maxActiveJobsPerClient: intOption(
      "maxActiveJobsPerClient",
      o.maxActiveJobsPerClient,
      DEFAULT_CORE_CONFIG.maxActiveJobsPerClient,
      1,
    ),
    quarantineAfterRejections: quarantineAfter,
    ...resolveRetention(o),
    limits,
  };
  return {
    dataDir: o.dataDir ?? DEFAULT_DATA_DIR,
    maxMessageBytes,
    maxLongPollMs: intOption("maxLongPollMs", o.maxLongPollMs, 30_000, 0),
    maxShardsPerAcquire: intOption("maxShardsPerAcquire", o.maxShardsPerAcquire, 1024, 1),
    maxOpenUploads: intOption("maxOpenUploads", o.maxOpenUploads, 64, 1),
    uploadIdleMs: intOption("uploadIdleMs", o.uploadIdleMs, 10 * 60_000, 1_000),
    tickIntervalMs: Math.max(20, Math.min(250, Math.floor(leaseTtlMs / 4))),
    invariantCheckIntervalMs: 5_000,
    fsync: o.fsync ?? true,
    localStore: o.localStore ?? true,
    verify: { enabled: o.verify ?? true, threads: verifyThreads, maxBacklogBytes: 512 * 1024 * 1024 },
    ...resolveStorageOptions(o),
    core,
  };
}

/** Resolves the connection limits of {@link CoordinatorOptions}. Throws a RangeError naming a bad option. */
export function resolveConnectionLimits(o: CoordinatorOptions): ConnectionLimits {
  const d = DEFAULT_CONNECTION_LIMITS;
  return {
    maxConnections: intOption("maxConnections", o.maxConnections, d.maxConnections, 1),
    maxConcurrentStreams: intOption("maxConcurrentStreams", o.maxConcurrentStreams, d.maxConcurrentStreams, 1),
    handshakeTimeoutMs: intOption("handshakeTimeoutMs", o.handshakeTimeoutMs, d.handshakeTimeoutMs, 100),
    idleTimeoutMs: intOption("idleTimeoutMs", o.idleTimeoutMs, d.idleTimeoutMs, 100),
    requestTimeoutMs: intOption("requestTimeoutMs", o.requestTimeoutMs, d.requestTimeoutMs, 100),
    keepaliveIntervalMs: intOption("keepaliveIntervalMs", o.keepaliveIntervalMs, d.keepaliveIntervalMs, 100),
    keepaliveTimeoutMs: intOption("keepaliveTimeoutMs", o.keepaliveTimeoutMs, d.keepaliveTimeoutMs, 100),
  };
}

/**
 * Starts a coordinator: a Connect gRPC server on HTTP/2 (TLS unless `insecure`) that
 * serves JobService, BlobService and WorkerService, the gRPC health service
 * (`grpc.health.v1.Health`) and server reflection (`grpc.reflection.v1` and `v1alpha`).
 * The same port answers plain HTTP/1.1 and HTTP/2 requests for `GET /healthz`,
 * `GET /metrics` (Prometheus) and `GET /ui` (live dashboard); see `docs/operations.md`.
 *
 * Secure by default: workers must present a client certificate signed by `tlsDir/ca.pem`
 * and clients a bearer token from `dataDir/tokens.json`, each request checked against
 * the access table (`access.ts`, SECURITY.md). `insecure` and `devNoAuth` turn that off
 * and are refused on a host that is not loopback.
 * @throws Error when TLS files are missing, or `insecure`/`devNoAuth` is asked for on a non-loopback host.
 */
export async function startCoordinator(o: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  const host = o.host ?? "127.0.0.1";
  const logger = o.logger ?? createLogger({ level: "info", format: "json" });
  if (o.insecure && !isLoopbackHost(host)) {
    throw new Error(
      `--insecure serves plaintext without authentication and is only allowed on a loopback host (127.0.0.1, ::1, localhost), not ${host}`,
    );
  }
  if (o.devNoAuth && !isLoopbackHost(host)) {
    throw new Error(
      `--dev-no-auth turns authentication off and is only allowed on a loopback host (127.0.0.1, ::1, localhost), not ${host}; ` +
        "on a network, workers need certificates (coordinator init-certs) and clients tokens (coordinator tokens add)",
    );
  }
  const authEnabled = !o.insecure && !o.devNoAuth;
  let tls: ServerTlsFiles | undefined;
  if (!o.insecure) {
    if (!o.tlsDir)
      throw new Error("TLS needs a certificate folder: pass --tls-dir DIR (create one with `coordinator init-certs --out DIR`)");
    tls = loadServerTls(o.tlsDir, authEnabled);
  }
  const dataDir = o.dataDir ?? DEFAULT_DATA_DIR;
  const tokens = authEnabled
    ? new TokenStore(dataDir, { onError: (message) => logger.error({ file: tokenFilePath(dataDir) }, message) })
    : undefined;
  const auth = createAuthenticator({ enabled: authEnabled, ...(tokens ? { tokens } : {}) });
  if (!authEnabled) {
    logger.warn(
      { insecure: o.insecure === true, devNoAuth: o.devNoAuth === true },
      "authentication is OFF (development mode): any local process may submit, read and cancel jobs and act as a worker",
    );
  } else if (tokens?.size === 0) {
    logger.warn(
      { file: tokenFilePath(dataDir) },
      "no client tokens yet: clients get UNAUTHENTICATED until one is made with `coordinator tokens add NAME`",
    );
  }
  const connectionLimits = resolveConnectionLimits(o);
  const resolved = resolveConfig(o);
  // A deadline never makes the coordinator hold a call longer than its own bounds (long-polls
  // end after maxLongPollMs), so this limit only refuses absurd values: clients that wait
  // long (the SDK's result({ timeoutMs })) put that wait into their call deadlines.
  const maxDeadlineMs = intOption("maxDeadlineMs", o.maxDeadlineMs, DEFAULT_MAX_DEADLINE_MS, 1_000);
  const metrics = createCoordinatorMetrics({ processMetrics: o.processMetrics ?? true });
  const config: CoordinatorConfig = {
    ...resolved,
    onJournalCommit: metrics.observeJournalWriteMs,
    ...(o.testCrashAt ? { crashAt: o.testCrashAt } : {}),
  };
  // Without a handler of the embedder's, a journal failure stops serving (see onFatal).
  let stopServing: () => void = () => {};
  const onFatal: FatalHandler = o.onFatal ?? (() => stopServing());
  const coordinator = await Coordinator.open(config, logger, { onFatal });
  // Attached after recovery: recovered jobs are the baseline, not counted again.
  const detachMetrics = metrics.attach(coordinator);
  const dashboard =
    (o.ui ?? true)
      ? createDashboard(coordinator, { staleAfterMs: config.maxLongPollMs + config.core.leaseTtlMs + 5_000 })
      : undefined;
  const shutdown = new AbortController();
  // Anything other than a ConnectError is a bug: log it with its cause, answer INTERNAL without details.
  // Innermost, so the metrics interceptor records INTERNAL for it; the error boundary makes every
  // message safe to send (error-boundary.ts).
  const normalize: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      if (e instanceof ConnectError) throw e;
      // A request about one job names it, so the error can be found by job id.
      const jobId = req.stream ? undefined : (req.message as { jobId?: unknown }).jobId;
      logger.error(
        { err: e, method: req.method.name, ...(typeof jobId === "string" && jobId !== "" ? { jobId } : {}) },
        "unexpected error in handler",
      );
      throw dceError(Code.Internal, ErrorReason.INTERNAL, INTERNAL_MESSAGE);
    }
  };
  // Request paths of streaming methods: the request timeout applies to unary calls only.
  const streamingPaths = new Set<string>();
  const handler = createRpcHandler({
    logger,
    routes: (r) => {
      coordinator.routes(r);
      registerHealthService(r, coordinator);
      registerReflectionService(r);
      for (const h of r.handlers) if (h.method.methodKind !== "unary") streamingPaths.add(h.requestPath);
    },
    // Paths that are no gRPC method: /healthz, /metrics, /ui.
    // Who the caller is, from its TLS certificate and its bearer token; the auth interceptor checks it.
    contextValues: auth.contextValues,
    fallback: createOpsHttpHandler({
      ...((o.metrics ?? true) ? { metrics } : {}),
      ...(dashboard ? { dashboard } : {}),
      guard: combineGuards(auth.opsGuard, o.opsGuard),
      isServing: () => !coordinator.state.draining,
      logger,
    }),
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // Matrix bytes barely compress; gzip would only cost CPU on the data plane.
    acceptCompression: [],
    maxTimeoutMs: maxDeadlineMs,
    shutdownSignal: shutdown.signal,
    // The error boundary is the outermost: every message of every interceptor and handler leaves
    // through it. Metrics next, so it sees the code `normalize` settles on. Authorization next:
    // nothing runs for a caller the access table does not allow.
    interceptors: [createErrorBoundary(logger), metrics.interceptor, auth.interceptor, normalize],
  });
  // Wider flow-control windows than Node's 64 KiB (see @dce/runtime/http2), bounded so one
  // connection can make the coordinator buffer at most 4 MiB unread.
  const settings = { maxConcurrentStreams: connectionLimits.maxConcurrentStreams, ...http2ServerWindowSettings };
  // HTTP/1.1 is accepted too, for Prometheus, curl and browsers on /metrics, /healthz
  // and /ui; gRPC itself needs HTTP/2, which clients negotiate by ALPN.
  let h2: http2.Http2Server | http2.Http2SecureServer;
  let server: net.Server;
  let h1: http.Server | undefined;
  if (tls) {
    // A client certificate is asked for but not required at the TLS layer: clients
    // authenticate with tokens and must connect without one. Whether a certificate
    // verified is checked per request (auth.ts); a worker RPC without one is refused.
    const mtls = authEnabled ? { requestCert: true, rejectUnauthorized: false } : {};
    h2 = http2.createSecureServer(
      { ...tls, ...mtls, allowHTTP1: true, settings, handshakeTimeout: connectionLimits.handshakeTimeoutMs },
      handler,
    );
    server = h2;
  } else {
    // Plaintext HTTP/2 has no ALPN: tell the protocols apart by the HTTP/2 preface.
    h2 = http2.createServer({ settings }, handler);
    h1 = http.createServer(handler);
    server = servePlaintextByPreface(h2, h1, connectionLimits.handshakeTimeoutMs);
  }
  // With allowHTTP1, the TLS server itself serves the HTTP/1.1 requests.
  const { sessions, sockets, http1Opened } = guardConnections(server, h2, h1 ?? h2, connectionLimits, (path) =>
    streamingPaths.has(path),
  );
  h2.on("session", widenServerConnectionWindow);
  if (tls) {
    (h2 as http2.Http2SecureServer).on("secureConnection", (socket: TLSSocket) => {
      if (socket.alpnProtocol !== "h2") http1Opened(socket);
    });
  } else {
    h1?.on("connection", http1Opened);
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 7070, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const url = `${tls ? "https" : "http"}://${urlHost}:${port}`;
  let closing: Promise<void> | undefined;
  const running: RunningCoordinator = {
    url,
    port,
    coordinator,
    auth: authEnabled,
    metrics,
    close() {
      closing ??= (async () => {
        coordinator.drain();
        shutdown.abort();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of sessions) s.close();
          // Sessions that do not close by themselves (idle long-polls) are destroyed after a grace period.
          setTimeout(() => {
            for (const s of sessions) s.destroy();
            for (const s of sockets) s.destroy();
          }, 2_000).unref();
        });
        await coordinator.close();
        dashboard?.close();
        detachMetrics();
      })();
      return closing;
    },
  };
  stopServing = () => {
    running.close().catch((e: unknown) => logger.error({ err: e }, "closing after a journal failure failed"));
  };
  return running;
}

/** Both guards must allow; the first refusal wins. */
function combineGuards(first: OpsGuard, second: OpsGuard | undefined): OpsGuard {
  if (!second) return first;
  return async (endpoint, req) => {
    const verdict = await first(endpoint, req);
    return verdict === true ? await second(endpoint, req) : verdict;
  };
}

/** The first bytes of every HTTP/2 connection ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), enough of them to decide. */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/**
 * A plaintext server that hands each connection to `h2` when it opens with the
 * HTTP/2 preface (prior knowledge, as gRPC clients do) and to `h1` otherwise.
 */
function servePlaintextByPreface(h2: http2.Http2Server, h1: http.Server, timeoutMs: number): net.Server {
  return net.createServer((socket) => {
    let seen = Buffer.alloc(0);
    // A connection that never sends enough bytes to decide is dropped.
    socket.setTimeout(timeoutMs, () => socket.destroy());
    const onError = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && n < H2_PREFACE.length) return;
      socket.off("data", onData);
      socket.off("error", onError);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      if (isH2) {
        // The HTTP/2 session reads what is buffered on the socket itself.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", onError);
  });
}
