/**
 * The worker's panel server (`--peer-listen`): other workers of the cluster read the
 * input panels this worker holds, so the coordinator's link carries each panel about
 * once instead of once per worker (issue 15). gRPC over HTTP/2 with mutual TLS: the
 * server presents the worker's own certificate and requires a client certificate signed
 * by the cluster CA with `OU=worker`.
 *
 * Connect's Node adapter on a bare `node:http2` secure server: the same stack the
 * coordinator serves with, so errors carry ErrorInfo details the same way, and the TLS
 * options (requestCert, rejectUnauthorized, ca) are Node's own.
 *
 * @packageDocumentation
 */

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, createContextValues, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ErrorInfoSchema, ErrorReason, PeerService } from "@dce/proto";
import type { BlobCache } from "../inputs/blob-cache.js";
import type { WorkerLogger } from "../log-scope.js";
import { findHeldPanel, panelRequestProblem } from "./held-panel.js";

/** Default most peer reads served at once; more are refused with RESOURCE_EXHAUSTED. */
export const defaultMaxPeerReads = 8;
/** Room left in each response for everything but the panel bytes. */
const messageHeadroomBytes = 64 * 1024;
/** A TLS handshake that takes longer than this is dropped. */
const handshakeTimeoutMs = 10_000;

/** Options of {@link startPanelServer}. */
export interface PanelServerOptions {
  /** Host and port to listen on (port 0 picks a free one). */
  readonly host: string;
  readonly port: number;
  /** The worker's certificate and key (PEM): its identity to the peers that read from it. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** The cluster CA (PEM): only clients with a certificate it signed may connect. */
  readonly ca: string | Buffer;
  /** Where panels are looked up; the server never starts a load in it. */
  readonly cache: BlobCache;
  /** Whether this worker is reading the panel under cache key `key` from a peer right now (such a load is not joined). */
  readonly readingFromPeers?: ((key: string) => boolean) | undefined;
  /** Largest message, in bytes: a response carries at most this less 64 KiB of panel bytes. */
  readonly maxMessageBytes: number;
  /** Most reads served at once; default {@link defaultMaxPeerReads}. */
  readonly maxConcurrentReads?: number | undefined;
  readonly log: WorkerLogger;
}

/** A listening panel server. */
export interface PanelServer {
  /** The host and port it listens on (the port resolved when 0 was asked for). */
  readonly host: string;
  readonly port: number;
  /** Bytes of panels served to peers so far. */
  readonly servedBytes: number;
  /** Stops listening and ends every connection. Idempotent. */
  close(): Promise<void>;
}

/** The CN of the verified `OU=worker` client certificate of a call; undefined when it has none. */
const callerKey = createContextKey<string | undefined>(undefined, { description: "peer worker identity" });

/**
 * Starts a panel server. Resolves once it listens.
 *
 * @throws the listen error (e.g. EADDRINUSE), or a TLS error for unusable PEM.
 */
export async function startPanelServer(o: PanelServerOptions): Promise<PanelServer> {
  const maxReads = o.maxConcurrentReads ?? defaultMaxPeerReads;
  const pageLimitBytes = o.maxMessageBytes - messageHeadroomBytes;
  let reading = 0;
  let servedBytes = 0;
  const shutdown = new AbortController();

  const impl: ServiceImpl<typeof PeerService> = {
    async readPanel(req, ctx) {
      if (ctx.values.get(callerKey) === undefined) {
        throw peerError(Code.PermissionDenied, ErrorReason.PERMISSION_DENIED, "panels are served to workers only (OU=worker)");
      }
      const problem = panelRequestProblem(req);
      if (problem !== undefined) throw peerError(Code.InvalidArgument, ErrorReason.MALFORMED_REQUEST, problem);
      if (reading >= maxReads) {
        throw peerError(Code.ResourceExhausted, ErrorReason.OVER_CAPACITY, `serving ${maxReads} peer reads already`, {
          limit: "maxPeerReads",
        });
      }
      reading++;
      try {
        const found = findHeldPanel(o.cache, req, AbortSignal.any([ctx.signal, shutdown.signal]), o.readingFromPeers);
        const held = await found;
        if (held === undefined) {
          throw peerError(Code.NotFound, ErrorReason.BLOB_NOT_FOUND, "this worker does not hold that panel", {
            blob_id: req.blobId,
          });
        }
        const offset = Number(req.offset);
        const want = req.maxBytes === 0 ? pageLimitBytes : Math.min(req.maxBytes, pageLimitBytes);
        const data = held.page(offset, want);
        servedBytes += data.byteLength;
        return { data, totalBytes: BigInt(held.totalBytes) };
      } finally {
        reading--;
      }
    },
  };

  const handler = connectNodeAdapter({
    routes: (router) => router.service(PeerService, impl),
    readMaxBytes: 64 * 1024,
    writeMaxBytes: o.maxMessageBytes,
    acceptCompression: [],
    contextValues: (req) => createContextValues().set(callerKey, workerIdentityOf(req.socket as TLSSocket)),
  });
  const server = http2.createSecureServer(
    {
      cert: o.cert,
      key: o.key,
      ca: o.ca,
      // Mutual TLS at the handshake: a client without a certificate from the cluster CA never gets a stream.
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: handshakeTimeoutMs,
      settings: { maxConcurrentStreams: maxReads * 2 },
    },
    handler,
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("tlsClientError", (err: NodeJS.ErrnoException) => {
    o.log.debug({ err: err.code ?? err.message }, "a peer's TLS handshake failed");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => o.log.warn({ err: err.message }, "panel server error"));
  const address = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    host: o.host,
    port: address.port,
    get servedBytes() {
      return servedBytes;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        shutdown.abort(new Error("worker stopping"));
        server.close(() => resolve());
        // Reads in flight are of no use to a peer of a stopping worker: it falls back to the coordinator.
        for (const session of sessions) session.destroy();
      });
      return closing;
    },
  };
}

/** The CN of a verified client certificate with `OU=worker`; undefined otherwise. */
function workerIdentityOf(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const subject = socket.getPeerCertificate().subject;
  const ou = subject?.OU;
  const units = Array.isArray(ou) ? ou : ou === undefined ? [] : [ou];
  const cn = subject?.CN;
  return units.includes("worker") && typeof cn === "string" && cn !== "" ? cn : undefined;
}

/** A ConnectError with a `dce.v1.ErrorInfo` detail, as the coordinator's errors carry. */
function peerError(code: Code, reason: ErrorReason, message: string, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError(message, code, undefined, [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, metadata }) },
  ]);
}
