import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { type CoreConfig, DEFAULT_CORE_CONFIG, DEFAULT_SPEC_LIMITS, type SpecLimits } from "@dce/core";
import { type Logger, pino } from "pino";
import { Coordinator, type CoordinatorConfig } from "./coordinator.js";

/** Options for {@link startCoordinator}; every field has a default. */
export interface CoordinatorOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** Port; 0 picks a free one. Default 7070. */
  port?: number;
  /** Folder holding `server.pem` and `server-key.pem` (from `coordinator init-certs`). Required unless `insecure`. */
  tlsDir?: string;
  /** Serve plaintext HTTP/2 (loopback hosts only). Default false. */
  insecure?: boolean;
  /** Folder for blobs and result buffers. Default "./.dce-data". */
  dataDir?: string;
  /** Lease lifetime in ms. Default 10 000. */
  leaseTtlMs?: number;
  /** Executions of one shard before its job fails. Default 5. */
  maxAttempts?: number;
  /** Largest message read or written, in bytes. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Longest long-poll in ms. Default 30 000. */
  maxLongPollMs?: number;
  /** Tile edge used when a job leaves it 0. Default 256. */
  defaultTile?: number;
  /** Overrides of the job limits. */
  limits?: Partial<SpecLimits>;
  /** Jobs queued or running at once. Default 1000. */
  maxActiveJobs?: number;
  /** Concurrent HTTP/2 streams per connection. Default 256. */
  maxConcurrentStreams?: number;
  /** fsync the journal and data files (default true). Turn off only in tests that never crash. */
  fsync?: boolean;
  /** Logger; default pino to stderr at "info". */
  logger?: Logger;
}

/** A running coordinator server. */
export interface RunningCoordinator {
  /** Base URL clients and workers use, e.g. `https://127.0.0.1:7070`. */
  readonly url: string;
  readonly port: number;
  readonly coordinator: Coordinator;
  /** Drains, closes connections and stops. Idempotent. */
  close(): Promise<void>;
}

/** Default largest message: 4 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** True when `host` only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
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
  const core: CoreConfig = {
    ...DEFAULT_CORE_CONFIG,
    leaseTtlMs,
    maxAttempts: o.maxAttempts ?? DEFAULT_CORE_CONFIG.maxAttempts,
    maxActiveJobs: o.maxActiveJobs ?? DEFAULT_CORE_CONFIG.maxActiveJobs,
    limits: { ...DEFAULT_SPEC_LIMITS, ...(o.defaultTile ? { defaultTile: o.defaultTile } : {}), ...o.limits },
  };
  return {
    dataDir: o.dataDir ?? ".dce-data",
    maxMessageBytes,
    maxLongPollMs: o.maxLongPollMs ?? 30_000,
    maxShardsPerAcquire: 1024,
    maxOpenUploads: 64,
    tickIntervalMs: Math.max(20, Math.min(250, Math.floor(leaseTtlMs / 4))),
    invariantCheckIntervalMs: 5_000,
    fsync: o.fsync ?? true,
    core,
  };
}

/**
 * Starts a coordinator: a Connect gRPC server on HTTP/2 (TLS unless `insecure`) that
 * serves JobService, BlobService and WorkerService.
 * @throws Error when TLS files are missing, or `insecure` is asked for on a non-loopback host.
 */
export async function startCoordinator(o: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  const host = o.host ?? "127.0.0.1";
  const logger = o.logger ?? pino({ level: "info" }, pino.destination(2));
  if (o.insecure && !isLoopbackHost(host)) {
    throw new Error(`--insecure serves plaintext and is only allowed on a loopback host, not ${host}`);
  }
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (!o.insecure) {
    if (!o.tlsDir)
      throw new Error("TLS needs a certificate folder: pass --tls-dir DIR (create one with `coordinator init-certs --out DIR`)");
    try {
      tls = { cert: readFileSync(join(o.tlsDir, "server.pem")), key: readFileSync(join(o.tlsDir, "server-key.pem")) };
    } catch (e) {
      throw new Error(`cannot read server.pem / server-key.pem in ${o.tlsDir}: ${(e as Error).message}`);
    }
  }
  const config = resolveConfig(o);
  const coordinator = await Coordinator.open(config, logger);
  const shutdown = new AbortController();
  // Anything other than a ConnectError is a bug: log it with its cause, answer INTERNAL without details.
  const normalize: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      if (e instanceof ConnectError) throw e;
      logger.error({ err: e, method: req.method.name }, "unexpected error in handler");
      throw new ConnectError("internal error", Code.Internal);
    }
  };
  const handler = connectNodeAdapter({
    routes: (r) => coordinator.routes(r),
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // Matrix bytes barely compress; gzip would only cost CPU on the data plane.
    acceptCompression: [],
    maxTimeoutMs: config.maxLongPollMs + 60_000,
    shutdownSignal: shutdown.signal,
    interceptors: [normalize],
  });
  const settings = { maxConcurrentStreams: o.maxConcurrentStreams ?? 256 };
  const server = tls
    ? http2.createSecureServer({ ...tls, allowHTTP1: false, settings }, handler)
    : http2.createServer({ settings }, handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
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
  return {
    url,
    port,
    coordinator,
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
          }, 2_000).unref();
        });
        await coordinator.close();
      })();
      return closing;
    },
  };
}
