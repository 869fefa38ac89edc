import type { EventEmitter } from "node:events";
import type * as http from "node:http";
import * as http2 from "node:http2";
import type * as net from "node:net";

/**
 * Connection-level limits of the coordinator's port, every default resolved. Each one
 * is listed, with its flag, in docs/limits.md.
 */
export interface ConnectionLimits {
  /** Connections open at once; more are closed as soon as they are accepted. */
  readonly maxConnections: number;
  /** Concurrent HTTP/2 streams per connection (advertised in SETTINGS; more are refused by the protocol layer). */
  readonly maxConcurrentStreams: number;
  /**
   * Time a new connection has to complete its TLS handshake, and then to open its
   * first HTTP/2 stream (or, over HTTP/1.1, to send its request headers).
   */
  readonly handshakeTimeoutMs: number;
  /** An HTTP/2 connection with no open stream for this long is closed (GOAWAY). */
  readonly idleTimeoutMs: number;
  /** A unary request must be received whole this long after its headers, or its stream is reset. */
  readonly requestTimeoutMs: number;
  /** The coordinator pings each HTTP/2 connection this often... */
  readonly keepaliveIntervalMs: number;
  /** ...and closes it when the ping is not answered within this time. */
  readonly keepaliveTimeoutMs: number;
}

/** Defaults of {@link ConnectionLimits}. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 1024,
  maxConcurrentStreams: 256,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  requestTimeoutMs: 60_000,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 10_000,
};

/** What {@link guardConnections} tracks, for a graceful close. */
export interface GuardedConnections {
  /** Open HTTP/2 sessions. */
  readonly sessions: ReadonlySet<http2.ServerHttp2Session>;
  /** Open sockets (HTTP/2 and HTTP/1.1). */
  readonly sockets: ReadonlySet<net.Socket>;
}

/**
 * Applies {@link ConnectionLimits} to a coordinator's servers, so that slow or idle
 * clients cannot hold its connections, streams or memory:
 *
 * - `server` (the listening socket) refuses connections over `maxConnections`;
 * - every HTTP/2 session of `h2` must open a stream within `handshakeTimeoutMs`, is
 *   closed after `idleTimeoutMs` without an open stream, and is destroyed when a
 *   keepalive ping goes unanswered for `keepaliveTimeoutMs`;
 * - a unary request (any path not in `isStreamingPath`) that is not received whole
 *   within `requestTimeoutMs` of its headers is reset (RST_STREAM CANCEL);
 * - an HTTP/1.1 connection (the plain-HTTP ops endpoints) must send its request headers
 *   within `handshakeTimeoutMs`, finish each request within `requestTimeoutMs`, and is
 *   closed after `idleTimeoutMs` between requests. `h1` emits `request` for them, and
 *   `http1Opened` must be called with each of their sockets when it is handed over.
 *
 * The TLS handshake timeout is an option of the TLS server itself (`handshakeTimeout`).
 * Pinned by test/integration/slow-clients.test.ts.
 */
export function guardConnections(
  server: net.Server,
  h2: http2.Http2Server | http2.Http2SecureServer,
  h1: EventEmitter,
  limits: ConnectionLimits,
  isStreamingPath: (path: string) => boolean,
): GuardedConnections & { http1Opened(socket: net.Socket): void } {
  server.maxConnections = limits.maxConnections;
  // Node's own HTTP/1.1 header and request timeouts do not apply to an HTTP/2 server's
  // HTTP/1.1 connections (allowHTTP1): one timer per socket does it for both servers.
  const h1Timers = new WeakMap<net.Socket, NodeJS.Timeout>();
  const armH1 = (socket: net.Socket, ms: number) => {
    clearTimeout(h1Timers.get(socket));
    const timer = setTimeout(() => socket.destroy(), ms);
    timer.unref();
    h1Timers.set(socket, timer);
  };
  const http1Opened = (socket: net.Socket) => {
    armH1(socket, limits.handshakeTimeoutMs);
    socket.once("close", () => clearTimeout(h1Timers.get(socket)));
  };
  h1.on(
    "request",
    (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      if (req.httpVersionMajor !== 1) return;
      const socket = req.socket as net.Socket;
      armH1(socket, limits.requestTimeoutMs);
      res.once("close", () => {
        if (!socket.destroyed) armH1(socket, limits.idleTimeoutMs);
      });
    },
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  // The connection of each peer, to end it for good: a closed session only half-closes its
  // socket and waits for the peer, which an idle or slow client never does.
  const byPeer = new Map<string, net.Socket>();
  const peerOf = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
    `${s.remoteAddress}:${s.remotePort}`;
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    const peer = peerOf(socket);
    byPeer.set(peer, socket);
    socket.on("close", () => {
      sockets.delete(socket);
      if (byPeer.get(peer) === socket) byPeer.delete(peer);
    });
  });
  // Over TLS the socket to destroy is the TLS one (it owns the connection's handle), known
  // once the handshake is done, just after the session was created.
  server.on("secureConnection", (socket: net.Socket) => byPeer.set(peerOf(socket), socket));
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    const peer = peerOf(session.socket);
    const kill = () => {
      session.destroy();
      byPeer.get(peer)?.destroy();
    };
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const arm = (ms: number) => {
      idle = setTimeout(() => {
        // GOAWAY first, so a well-behaved client sees a clean close; then the connection goes.
        session.close();
        setTimeout(kill, 1_000).unref();
      }, ms);
      idle.unref();
    };
    // Until its first stream, a connection gets only the (short) handshake time.
    arm(Math.min(limits.handshakeTimeoutMs, limits.idleTimeoutMs));
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      stream.once("close", () => {
        open--;
        if (open === 0 && !session.closed && !session.destroyed) arm(limits.idleTimeoutMs);
      });
    });
    const keepalive = setInterval(() => {
      if (session.closed || session.destroyed) return;
      const deadline = setTimeout(kill, limits.keepaliveTimeoutMs);
      deadline.unref();
      const sent = session.ping((err) => {
        clearTimeout(deadline);
        if (err && !session.destroyed) kill();
      });
      if (!sent) clearTimeout(deadline);
    }, limits.keepaliveIntervalMs);
    keepalive.unref();
    session.once("close", () => {
      sessions.delete(session);
      clearTimeout(idle);
      clearInterval(keepalive);
    });
  });
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    if (isStreamingPath(String(headers[":path"] ?? ""))) return;
    const timer = setTimeout(() => {
      if (!stream.readableEnded && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, limits.requestTimeoutMs);
    timer.unref();
    const done = () => clearTimeout(timer);
    stream.once("end", done);
    stream.once("close", done);
  });
  return { sessions, sockets, http1Opened };
}
