/**
 * The worker's side of the peer data plane: its panel server (when `peerListen` is set
 * and the worker has a certificate) and its reader of peers' panels (whenever it has a
 * certificate). Started before registration, so the address it registers is live; stopped
 * with the worker.
 *
 * @packageDocumentation
 */
import type { BlobCache } from "../inputs/blob-cache.js";
import type { WorkerLogger } from "../log-scope.js";
import type { WorkerConfig } from "../worker-options.js";
import { formatHostPort } from "./host-port.js";
import { type PanelServer, startPanelServer } from "./panel-server.js";
import { PeerReader } from "./peer-reader.js";

/** A started peer plane. */
export interface PeerPlane {
  /** Reads panels from the peers a lease names; undefined without a worker certificate. */
  readonly reader: PeerReader | undefined;
  /** What to register as `peer_address`: "" when this worker serves no peers. */
  readonly advertisedAddress: string;
  /** Bytes of panels served to peers so far. */
  readonly servedBytes: number;
  /** Stops the server and ends the reader's connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the peer plane of a worker.
 *
 * @throws the panel server's listen error (an address in use, one not on this host).
 */
export async function startPeerPlane(config: WorkerConfig, cache: BlobCache, log: WorkerLogger): Promise<PeerPlane> {
  const { ca, cert, key } = config;
  const tls = ca !== undefined && cert !== undefined && key !== undefined ? { ca, cert, key } : undefined;
  const reader =
    tls === undefined
      ? undefined
      : new PeerReader({
          ...tls,
          maxMessageBytes: config.maxMessageBytes,
          reachTimeoutMs: config.peerTimeoutMs,
          callTimeoutMs: config.rpcTimeoutMs,
          log,
        });
  let server: PanelServer | undefined;
  if (config.peerListen !== undefined && tls === undefined) {
    // Peers are workers of the cluster, known by their certificates: without one there is no mutual TLS to serve them over.
    log.info(
      { peerListen: formatHostPort(config.peerListen) },
      "serving no peers: the panel server needs this worker's certificate, key and the cluster CA (--cert, --key, --ca)",
    );
  } else if (config.peerListen !== undefined && tls !== undefined) {
    server = await startPanelServer({
      ...config.peerListen,
      ...tls,
      cache,
      readingFromPeers: (key) => reader?.isReading(key) ?? false,
      maxMessageBytes: config.maxMessageBytes,
      maxConcurrentReads: config.maxPeerReads,
      log,
    });
  }
  const advertised = server === undefined ? "" : formatHostPort(config.peerAdvertise ?? { host: server.host, port: server.port });
  if (server !== undefined) {
    log.info({ peerListen: formatHostPort(server), peerAdvertise: advertised }, "serving input panels to peers");
  }
  let closing: Promise<void> | undefined;
  return {
    reader,
    advertisedAddress: advertised,
    get servedBytes() {
      return server?.servedBytes ?? 0;
    },
    close() {
      closing ??= (async () => {
        reader?.close();
        await server?.close();
      })();
      return closing;
    },
  };
}
