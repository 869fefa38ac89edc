/**
 * HTTP/2 flow control shared by every dce endpoint (coordinator, worker, SDK), Node.js only
 * (`@dce/runtime/http2`).
 *
 * Node's HTTP/2 defaults to 64 KiB windows, per stream and per connection, so a 4 MiB
 * message crosses loopback in 64 windows, each waiting for a WINDOW_UPDATE round trip.
 * Measured here: 4 MiB `ReadBlob` calls carried 103–138 MiB/s with the defaults and
 * 178–187 MiB/s with these windows. The windows also bound memory: a peer can have at most
 * the connection window of unread bytes buffered per connection. Clients (workers, SDK)
 * only receive what they asked for and open wide windows; the coordinator, which any
 * caller can send to, opens narrower ones (see {@link HTTP2_SERVER_CONNECTION_WINDOW_BYTES}).
 *
 * @packageDocumentation
 */
import type * as http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** Receive window per stream: one default 4 MiB message and its framing. */
export const HTTP2_STREAM_WINDOW_BYTES = 4 * 1024 * 1024 + 64 * 1024;
/** Receive window per connection: several large messages in flight on one connection. */
export const HTTP2_CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

/** Receive window per stream on the coordinator. */
export const HTTP2_SERVER_STREAM_WINDOW_BYTES = 1024 * 1024;
/**
 * Receive window per connection on the coordinator: what one connection can make it
 * buffer unread, whatever its streams send (oversized messages included).
 */
export const HTTP2_SERVER_CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Memory a client session may hold, in MiB (Node's `maxSessionMemory`, default 10). Node
 * counts the request bytes written but not yet on the wire, and resets every stream the
 * peer answers while the session is over it (NGHTTP2_ENHANCE_YOUR_CALM). On loopback the
 * bytes leave at once; on a 1 Gbit/s link three concurrent 4 MiB upload chunks plus the
 * 16 MiB receive window went over 10 MiB and failed the uploads (test/multihost). Room for
 * {@link HTTP2_CONNECTION_WINDOW_BYTES} received and a dozen 4 MiB chunks queued.
 */
export const HTTP2_CLIENT_SESSION_MEMORY_MIB = 64;

/** SETTINGS a client session announces. */
export const http2WindowSettings: http2.Settings = { initialWindowSize: HTTP2_STREAM_WINDOW_BYTES };
/** SETTINGS the coordinator announces. */
export const http2ServerWindowSettings: http2.Settings = { initialWindowSize: HTTP2_SERVER_STREAM_WINDOW_BYTES };

/** Widens a client session's connection-level receive window (Node offers no option for it). */
export function widenConnectionWindow(session: http2.Http2Session): void {
  if (!session.destroyed) session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW_BYTES);
}

/** Widens a coordinator session's connection-level receive window. */
export function widenServerConnectionWindow(session: http2.Http2Session): void {
  if (!session.destroyed) session.setLocalWindowSize(HTTP2_SERVER_CONNECTION_WINDOW_BYTES);
}

/**
 * The options of every client session: the caller's, with the wide stream window and
 * {@link HTTP2_CLIENT_SESSION_MEMORY_MIB} of session memory unless the caller set its own.
 */
export function clientSessionOptions<O extends http2.ClientSessionOptions | http2.SecureClientSessionOptions>(
  options?: O,
): O | http2.ClientSessionOptions {
  return {
    maxSessionMemory: HTTP2_CLIENT_SESSION_MEMORY_MIB,
    ...options,
    settings: { ...options?.settings, ...http2WindowSettings },
  };
}

/**
 * A connect-node session manager whose sessions announce {@link http2WindowSettings} and
 * open their connection window wide. Pass it as `sessionManager` to `createGrpcTransport`.
 */
export class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.Http2Session>();

  constructor(
    url: URL | string,
    pingOptions?: ConstructorParameters<typeof Http2SessionManager>[1],
    options?: http2.ClientSessionOptions | http2.SecureClientSessionOptions,
  ) {
    super(url, pingOptions, clientSessionOptions(options));
    keepConnectionUnderWay(this);
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session !== undefined && !this.#widened.has(session)) {
      this.#widened.add(session);
      widenConnectionWindow(session);
      session.on("error", ignoreLateSessionError);
    }
    return stream;
  }
}

/**
 * Keeps a session's last error from killing the process. connect-node 2.1.2 destroys a
 * connection whose PING goes unanswered with an error, and by then it may have removed its
 * own 'error' listener (it left the connection for a new one): Node then raises the
 * error with nobody listening. Seen on a worker under heavy load ("PING timed out", exit
 * 1, in the middle of a job). The streams on that session fail by themselves, so the
 * callers hear of it; here there is nothing left to do.
 */
function ignoreLateSessionError(): void {}

/** The two members of connect-node's `Http2SessionManager` (2.1.x, private there) that {@link keepConnectionUnderWay} wraps. */
interface ManagerInternals {
  s: { t: string };
  setState(next: { t: string; conn?: Promise<http2.ClientHttp2Session> }): void;
}

/**
 * Stops the manager from giving up on a connection that is still being opened for another one.
 *
 * connect-node 2.1.2: when a keepalive check of a dead connection fails while a request has
 * already started a new connection, the manager starts a third and drops the second with
 * its 'error' listener removed, without closing it. When that socket then fails (a black
 * hole ends, the server times out the TLS handshake), Node raises the error with nobody
 * listening and the process dies. Here the manager keeps waiting for the connection under
 * way; the spare one is closed once it connects, and its failure is its own listener's.
 * Covered by test/integration/network.test.ts ("blackhole").
 */
function keepConnectionUnderWay(manager: Http2SessionManager): void {
  const m = manager as unknown as ManagerInternals;
  const setState = m.setState.bind(manager);
  m.setState = (next) => {
    if (m.s.t === "connecting" && next.t === "connecting" && next !== m.s) {
      next.conn?.then(
        (spare) => {
          spare.on("error", () => {}); // closing it is all that is left to do
          spare.close();
        },
        () => {},
      );
      return;
    }
    setState(next);
  };
}
