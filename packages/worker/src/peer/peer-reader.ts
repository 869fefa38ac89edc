/**
 * Reads an input panel from the peers a lease names (PeerService.ReadPanel), trusting
 * none of them: each is reached over mutual TLS, its certificate must chain to the
 * cluster CA and carry the identity the coordinator named (not a host name), and the
 * panel's bytes must hash to the SHA-256 the lease carries. A peer that fails any of
 * this, errs or runs past its deadline is skipped for the next; when none serves the
 * panel the caller fetches it from the coordinator.
 *
 * @packageDocumentation
 */
import { createHash } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PanelAxis, PeerService, type PeerSource } from "@dce/proto";
import { WideWindowSessionManager } from "@dce/runtime/http2";
import { errorMessage } from "../errors.js";
import { colPanelKey, rowPanelKey } from "../inputs/panel-key.js";
import type { WorkerLogger } from "../log-scope.js";

/**
 * Default bound, in milliseconds, on reaching a peer (its connection and TLS handshake)
 * and on its silence once reached (HTTP/2 PINGs unanswered): a peer that is down, cut
 * off or stopped is given up within about this long.
 */
export const defaultPeerTimeoutMs = 3_000;
/**
 * Default deadline of one ReadPanel call to a peer that answers PINGs, in milliseconds:
 * a peer still loading the panel (from the coordinator) answers once it has it, and
 * waiting for it costs less than loading the panel a second time.
 */
export const defaultPeerReadTimeoutMs = 30_000;
/** Room left in each response for everything but the panel bytes. */
const messageHeadroomBytes = 64 * 1024;

/** Options of {@link PeerReader}. */
export interface PeerReaderOptions {
  /** The cluster CA (PEM): a peer's certificate must chain to it. */
  readonly ca: string | Buffer;
  /** This worker's certificate and key (PEM), presented to peers. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** Largest message read, in bytes; pages ask for this less 64 KiB. */
  readonly maxMessageBytes: number;
  /** Bound on reaching a peer and on its silence, in milliseconds; default {@link defaultPeerTimeoutMs}. */
  readonly reachTimeoutMs?: number | undefined;
  /** Deadline of each ReadPanel call to a reachable peer, in milliseconds; default {@link defaultPeerReadTimeoutMs}. */
  readonly callTimeoutMs?: number | undefined;
  readonly log: WorkerLogger;
}

/** The panel to read: a matrix's rows or columns `[start, end)`. */
export interface PanelRequest {
  readonly blobId: string;
  readonly rows: number;
  readonly cols: number;
  readonly axis: PanelAxis;
  readonly start: number;
  readonly end: number;
  /** The panel's size in bytes. */
  readonly totalBytes: number;
}

/** A peer connection: its client and the session manager to close it with. */
interface PeerChannel {
  readonly client: Client<typeof PeerService>;
  readonly sessions: WideWindowSessionManager;
}

/**
 * The session manager of one peer connection. connect-node 2.1.2 destroys a connection
 * whose PING timed out with an error, and raises that error again on a session it no
 * longer listens to once the call on it has failed: with nobody listening, Node would
 * throw it and end the worker. The call has already failed over to the next source, so
 * here every session gets a listener of its own. Covered by "panel-server.test.ts" ("goes
 * silent in the middle of a call").
 */
class PeerSessionManager extends WideWindowSessionManager {
  readonly #heard = new WeakSet<object>();

  override async request(...args: Parameters<WideWindowSessionManager["request"]>) {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session !== undefined && !this.#heard.has(session)) {
      this.#heard.add(session);
      session.on("error", () => {});
    }
    return stream;
  }
}

/** Reads panels from peers; one connection per peer, kept until {@link PeerReader.close}. */
export class PeerReader {
  readonly #o: PeerReaderOptions;
  readonly #channels = new Map<string, PeerChannel>();
  /** Peers already warned about: a peer that keeps failing is logged once at warn, then at debug. */
  readonly #warned = new Set<string>();
  /** Cache keys of the panels being read from peers now, with how many reads of each. */
  readonly #reading = new Map<string, number>();
  #bytesRead = 0;

  constructor(options: PeerReaderOptions) {
    this.#o = options;
  }

  /** Whether the panel under cache key `key` (panel-key.ts) is being read from a peer now. */
  isReading(key: string): boolean {
    return this.#reading.has(key);
  }

  /** Bytes of panels read from peers (and accepted) so far. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /**
   * The panel from the first of `peers` that serves it whole with bytes hashing to
   * `sha256`, in shared memory; `undefined` when none does (or `sha256` is not a SHA-256).
   * Aborting `signal` stops at once and rejects with its reason.
   */
  async read(
    panel: PanelRequest,
    peers: readonly PeerSource[],
    sha256: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    if (peers.length === 0) return undefined;
    if (sha256.byteLength !== 32) {
      this.#complain("lease", { blobId: panel.blobId }, "a lease names peers without the panel's SHA-256; not using them");
      return undefined;
    }
    const key = (panel.axis === PanelAxis.ROWS ? rowPanelKey : colPanelKey)(panel.blobId, panel.start, panel.end);
    this.#reading.set(key, (this.#reading.get(key) ?? 0) + 1);
    try {
      return await this.#readFromPeers(panel, peers, sha256, signal);
    } finally {
      const left = (this.#reading.get(key) ?? 1) - 1;
      if (left === 0) this.#reading.delete(key);
      else this.#reading.set(key, left);
    }
  }

  async #readFromPeers(
    panel: PanelRequest,
    peers: readonly PeerSource[],
    sha256: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    for (const peer of peers) {
      signal.throwIfAborted();
      try {
        const bytes = await this.#readFrom(peer, panel, signal);
        if (!createHash("sha256").update(bytes).digest().equals(sha256)) {
          this.#complain(
            peer.workerId,
            fieldsOf(peer, panel),
            "a peer served a panel whose SHA-256 is not the lease's; skipping it",
          );
          continue;
        }
        this.#bytesRead += bytes.byteLength;
        return bytes;
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        this.#complain(
          peer.workerId,
          { ...fieldsOf(peer, panel), err: errorMessage(e) },
          "reading a panel from a peer failed; skipping it",
        );
      }
    }
    return undefined;
  }

  /** Ends every peer connection. */
  close(): void {
    for (const channel of this.#channels.values()) channel.sessions.abort();
    this.#channels.clear();
  }

  /** The whole panel from one peer, page by page. @throws on any error, or when the peer's size is not the panel's. */
  async #readFrom(peer: PeerSource, panel: PanelRequest, signal: AbortSignal): Promise<Uint8Array> {
    const { client, sessions } = this.#channel(peer);
    await this.#reach(sessions, signal);
    // Shared memory: kernel threads read it in place.
    const out = new Uint8Array(new SharedArrayBuffer(panel.totalBytes));
    const pageBytes = this.#o.maxMessageBytes - messageHeadroomBytes;
    const timeoutMs = this.#o.callTimeoutMs ?? defaultPeerReadTimeoutMs;
    for (let offset = 0; offset < panel.totalBytes; ) {
      const res = await client.readPanel(
        { ...panel, offset: BigInt(offset), maxBytes: Math.min(pageBytes, panel.totalBytes - offset) },
        { signal, timeoutMs },
      );
      if (Number(res.totalBytes) !== panel.totalBytes) {
        throw new Error(`the peer's panel is ${res.totalBytes} bytes, not ${panel.totalBytes}`);
      }
      if (res.data.byteLength === 0 || offset + res.data.byteLength > panel.totalBytes) {
        throw new Error(`the peer returned ${res.data.byteLength} bytes at offset ${offset} of ${panel.totalBytes}`);
      }
      out.set(res.data, offset);
      offset += res.data.byteLength;
    }
    return out;
  }

  /**
   * Opens the connection to a peer (TLS handshake included) within the reach bound.
   * @throws when it fails or takes longer.
   */
  async #reach(sessions: WideWindowSessionManager, signal: AbortSignal): Promise<void> {
    const reachMs = this.#o.reachTimeoutMs ?? defaultPeerTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), reachMs);
    });
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => {});
    try {
      const state = await Promise.race([sessions.connect(), late, aborted]);
      if (state === "late") throw new Error(`the peer was not reached within ${reachMs} ms`);
      if (state === "error") throw new Error(`the peer could not be reached: ${errorMessage(sessions.error())}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The connection to `peer`, opened on first use; keyed by address and identity, so a new identity at an old address gets its own. */
  #channel(peer: PeerSource): PeerChannel {
    const key = `${peer.address}\u0000${peer.identity}`;
    let channel = this.#channels.get(key);
    if (channel === undefined) {
      const baseUrl = `https://${peer.address}`;
      const reachMs = this.#o.reachTimeoutMs ?? defaultPeerTimeoutMs;
      // PINGs while a call is open: a peer that stops answering (stopped, cut off) ends the
      // call within about the reach bound, even while the call itself may wait longer.
      const ping = { pingIntervalMs: Math.min(1_000, reachMs), pingTimeoutMs: reachMs };
      const sessions = new PeerSessionManager(baseUrl, ping, {
        ca: this.#o.ca,
        cert: this.#o.cert,
        key: this.#o.key,
        // The peer is who the coordinator says, whatever address it is reached at: its
        // certificate (chained to the cluster CA by Node) must be OU=worker, CN=identity.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => identityProblem(cert, peer.identity),
      });
      const transport = createGrpcTransport({
        baseUrl,
        readMaxBytes: this.#o.maxMessageBytes,
        writeMaxBytes: this.#o.maxMessageBytes,
        acceptCompression: [],
        sessionManager: sessions,
      });
      channel = { client: createClient(PeerService, transport), sessions };
      this.#channels.set(key, channel);
    }
    return channel;
  }

  #complain(who: string, fields: Record<string, unknown>, msg: string): void {
    if (this.#warned.has(who)) {
      this.#o.log.debug(fields, msg);
    } else {
      this.#warned.add(who);
      this.#o.log.warn(fields, msg);
    }
  }
}

/** Why `cert` is not the worker certificate of `identity`; `undefined` when it is. */
export function identityProblem(cert: PeerCertificate, identity: string): Error | undefined {
  const ou = cert.subject?.OU;
  const units = Array.isArray(ou) ? ou : ou === undefined ? [] : [ou];
  const cn = cert.subject?.CN;
  if (identity !== "" && units.includes("worker") && cn === identity) return undefined;
  return new Error(
    `the peer's certificate is "OU=${units.join("+")}, CN=${String(cn)}", not the worker "${identity}" the coordinator named`,
  );
}

function fieldsOf(peer: PeerSource, panel: PanelRequest): Record<string, unknown> {
  return {
    peer: peer.workerId,
    address: peer.address,
    identity: peer.identity,
    blobId: panel.blobId,
    start: panel.start,
    end: panel.end,
  };
}
