import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { BulkChannel } from "@dce/runtime/bulk-calls";
import { WideWindowSessionManager } from "@dce/runtime/http2";
import type { WorkerConfig } from "./worker-options.js";

/**
 * The connection the worker's matrix bytes go on (UploadChunk and ReadBlob, without
 * Connect's copies: `@dce/runtime/bulk-calls`): a second one to the coordinator, with
 * the same certificate, so panels in flight never hold up a heartbeat or a report.
 */
export function createBulkChannel(config: WorkerConfig): BulkChannel {
  const { nodeOptions, ping } = connectionOptions(config);
  return { manager: new WideWindowSessionManager(config.coordinatorUrl, ping, nodeOptions), baseUrl: config.coordinatorUrl };
}

/** What both connections to the coordinator are opened with: TLS material and PINGs. */
function connectionOptions(config: WorkerConfig) {
  const tls = new URL(config.coordinatorUrl).protocol === "https:";
  const nodeOptions = tls
    ? {
        ...(config.ca !== undefined ? { ca: config.ca } : {}),
        // mTLS: the certificate is the worker's identity at the coordinator.
        ...(config.cert !== undefined && config.key !== undefined ? { cert: config.cert, key: config.key } : {}),
      }
    : {};
  // PINGs notice a dead (black-holed or half-open) connection under a long-poll well
  // within a lease TTL, so the worker reconnects before its leases expire
  // (covered by test/integration/network.test.ts).
  const ping = { pingIntervalMs: 1_000, pingTimeoutMs: 1_500 };
  return { nodeOptions, ping };
}

/** The gRPC-over-HTTP/2 transport to the coordinator: mTLS when configured, PINGs, wide windows. */
export function createTransport(config: WorkerConfig): Transport {
  const { nodeOptions, ping } = connectionOptions(config);
  return createGrpcTransport({
    // connect-node's gRPC transport always speaks HTTP/2 (it takes no httpVersion option).
    baseUrl: config.coordinatorUrl,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // float64 matrices barely compress, and gzip of every blob chunk cost the server
    // more time than the transfer itself (measured: ~4x slower reads on loopback).
    acceptCompression: [],
    // Wide flow-control windows: a 4 MiB blob chunk arrives in one window.
    sessionManager: new WideWindowSessionManager(config.coordinatorUrl, ping, nodeOptions),
  });
}
