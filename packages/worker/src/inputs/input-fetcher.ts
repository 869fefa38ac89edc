import { type MatrixRef, PanelAxis, type PeerSource } from "@dce/proto";
import type { BlobTransfer, ReadOptions } from "@dce/runtime/blob-transfer";
import { columnPanelView } from "@dce/runtime/strided-view";
import { ShardDataError } from "../errors.js";
import { bytesToFloat64 } from "../internal/bytes.js";
import type { WorkerLogger } from "../log-scope.js";
import type { PeerReader } from "../peer/peer-reader.js";
import type { ShardPlan } from "../pull/shard.js";
import type { Session } from "../session/session.js";
import type { BlobCache } from "./blob-cache.js";
import { colPanelKey, rowPanelKey } from "./panel-key.js";

/**
 * A matrix up to this size (and a quarter of the cache) is fetched whole rather than by
 * panels: rows of A, columns of B.
 */
const wholeMatrixMaxBytes = 4 * 1024 * 1024;

/** What an {@link InputFetcher} needs of the worker around it. */
export interface InputFetcherDeps {
  readonly session: Session;
  readonly transfer: BlobTransfer;
  readonly cache: BlobCache;
  /** Byte budget of `cache`. */
  readonly cacheBytes: number;
  readonly rpcTimeoutMs: number;
  readonly log: WorkerLogger;
  /** Reads panels from the peers a lease names; absent when this worker has no certificate. */
  readonly peers?: PeerReader | undefined;
}

/** Input bytes a worker received, by where they came from. */
export interface InputBytes {
  /** From peers (PeerService.ReadPanel), accepted after their SHA-256 matched. */
  readonly peer: number;
  /** From the coordinator (ReadBlob, or its blob files on this host). */
  readonly coordinator: number;
}

/**
 * A shard's inputs, in shared memory: its rows of A (`m × k`), and B's columns for it,
 * which the kernel picks out of `b` (`k × ldb`, row-major) from column `bColStart` on.
 * Either all of B (`ldb` = B's columns, `bColStart` = the shard's first column) or just
 * the shard's column panel (`ldb` = its width, `bColStart` = 0).
 */
export interface ShardInputs {
  readonly a: Float64Array;
  readonly b: Float64Array;
  readonly bColStart: number;
  readonly ldb: number;
}

/**
 * Brings a shard's A and B blocks to the worker: from the lease itself (small inputs
 * come inline), the block cache, the coordinator's blob files on this host, or ReadBlob.
 * Everything lands in shared memory and is cached, so kernel threads read it in place and
 * the shards of one job fetch each block once per worker. Over the network (no local
 * store) a large A comes by row panels and a large B by column panels, so a worker reads
 * only the panels its shards use.
 */
export class InputFetcher {
  readonly #d: InputFetcherDeps;
  #coordinatorBytes = 0;

  constructor(deps: InputFetcherDeps) {
    this.#d = deps;
  }

  /** Input bytes received so far, by source. */
  get bytesBySource(): InputBytes {
    return { peer: this.#d.peers?.bytesRead ?? 0, coordinator: this.#coordinatorBytes };
  }

  /** The inputs of `plan`. Aborting `signal` abandons the wait (a shared load goes on for others). */
  async load(plan: ShardPlan, signal: AbortSignal): Promise<ShardInputs> {
    // Both inputs arrive in shared memory and are cached: the kernel thread reads
    // them in place, and B's columns are picked out there, off the event loop.
    const inlineA = this.#adoptInline(plan.a, signal);
    const inlineB = this.#adoptInline(plan.b, signal);
    const from = plan.rowStart * plan.k;
    const [a, b] = await Promise.all([
      inlineA?.subarray(from, from + plan.m * plan.k) ?? this.#fetchRows(plan, signal),
      inlineB === undefined ? this.#fetchColumns(plan, signal) : wholeB(plan, inlineB),
    ]);
    return { a, ...b };
  }

  /**
   * B's columns `[colStart, colEnd)`: all of B when it is cached, small, served by the
   * local store (the page cache, no network) or the shard needs every column; otherwise
   * the column panel alone, read as a strided view and cached as a block of its own.
   */
  async #fetchColumns(plan: ShardPlan, signal: AbortSignal): Promise<Omit<ShardInputs, "a">> {
    const { cache, session } = this.#d;
    const ref = plan.b;
    const sizeBytes = ref.rows * ref.cols * 8;
    const cached = cache.get(ref.blobId);
    if (cached !== undefined && cached.length === ref.rows * ref.cols) return wholeB(plan, cached);
    const width = plan.colEnd - plan.colStart;
    const whole =
      session.localStore !== undefined ||
      width === ref.cols ||
      sizeBytes <= Math.min(wholeMatrixMaxBytes, this.#d.cacheBytes / 4);
    if (whole) return wholeB(plan, await cache.getOrLoad(ref.blobId, (s) => this.#fetchMatrix(ref, s), signal));
    // The shards of one column band (the same columns, other rows) fetch it once per worker.
    const key = colPanelKey(ref.blobId, plan.colStart, plan.colEnd);
    const totalBytes = ref.rows * width * 8;
    const panel = await cache.getOrLoad(
      key,
      (s) =>
        this.#loadPanel(
          { ref, axis: PanelAxis.COLS, start: plan.colStart, end: plan.colEnd, totalBytes },
          plan.panels.bPeers,
          plan.panels.bPanelSha256,
          async (signal) => {
            const out = new Uint8Array(new SharedArrayBuffer(totalBytes));
            await this.#read(ref, signal, (o) =>
              this.#d.transfer.readStrided(ref.blobId, columnPanelView(ref.cols, plan.colStart, plan.colEnd), out, sizeBytes, o),
            );
            this.#coordinatorBytes += totalBytes;
            return out;
          },
          s,
        ),
      signal,
    );
    return { b: panel, bColStart: 0, ldb: width };
  }

  /** Rows `[rowStart, rowStart + m)` of A: one contiguous byte range (or a slice of a cached A). */
  async #fetchRows(plan: ShardPlan, signal: AbortSignal): Promise<Float64Array> {
    const { cache } = this.#d;
    const from = plan.rowStart * plan.k;
    const cached = cache.get(plan.a.blobId);
    if (cached !== undefined && cached.length === plan.a.rows * plan.a.cols) {
      return cached.subarray(from, from + plan.m * plan.k);
    }
    if (plan.a.rows * plan.a.cols * 8 <= Math.min(wholeMatrixMaxBytes, this.#d.cacheBytes / 4)) {
      // A small A is cheaper to fetch once whole than panel by panel.
      const whole = await cache.getOrLoad(plan.a.blobId, (s) => this.#fetchMatrix(plan.a, s), signal);
      return whole.subarray(from, from + plan.m * plan.k);
    }
    // A row panel is a block of its own in the cache: the shards of one row band (the
    // same rows, other columns) fetch it once per worker.
    const rowEnd = plan.rowStart + plan.m;
    return cache.getOrLoad(
      rowPanelKey(plan.a.blobId, plan.rowStart, rowEnd),
      (s) =>
        this.#loadPanel(
          { ref: plan.a, axis: PanelAxis.ROWS, start: plan.rowStart, end: rowEnd, totalBytes: plan.m * plan.k * 8 },
          plan.panels.aPeers,
          plan.panels.aPanelSha256,
          (signal) => this.#readRange(plan.a, from * 8, plan.m * plan.k * 8, signal),
          s,
        ),
      signal,
    );
  }

  /**
   * One panel: from the first peer the lease names that serves it with the right SHA-256,
   * else from the coordinator by `fromCoordinator`. The B column panels (cache key
   * `colPanelKey`) go through here the same way.
   */
  async #loadPanel(
    panel: { ref: MatrixRef; axis: PanelAxis; start: number; end: number; totalBytes: number },
    peers: readonly PeerSource[],
    sha256: Uint8Array,
    fromCoordinator: (signal: AbortSignal) => Promise<Uint8Array>,
    signal: AbortSignal,
  ): Promise<Float64Array> {
    const { ref, ...range } = panel;
    const request = { blobId: ref.blobId, rows: ref.rows, cols: ref.cols, ...range };
    const fromPeer = this.#d.peers === undefined ? undefined : await this.#d.peers.read(request, peers, sha256, signal);
    const source = fromPeer === undefined ? "coordinator" : "peer";
    this.#d.log.debug(
      { blobId: ref.blobId, axis: PanelAxis[panel.axis], start: panel.start, end: panel.end, bytes: panel.totalBytes, source },
      "panel fetched",
    );
    return bytesToFloat64(fromPeer ?? (await fromCoordinator(signal)));
  }

  /** Caches a matrix that came inline with its lease (small inputs), so no read is needed. */
  #adoptInline(ref: MatrixRef, signal: AbortSignal): Float64Array | undefined {
    const bytes = ref.inlineData;
    if (bytes.byteLength === 0 || bytes.byteLength !== ref.rows * ref.cols * 8) return undefined;
    const cached = this.#d.cache.get(ref.blobId);
    if (cached !== undefined) return cached;
    const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
    shared.set(bytes);
    const matrix = bytesToFloat64(shared);
    void this.#d.cache.getOrLoad(ref.blobId, async () => matrix, signal).catch(() => {});
    return matrix;
  }

  /** A whole matrix (B), for the cache. */
  async #fetchMatrix(ref: MatrixRef, signal: AbortSignal): Promise<Float64Array> {
    const sizeBytes = ref.rows * ref.cols * 8;
    this.#d.log.debug({ blobId: ref.blobId, sizeBytes }, "fetching matrix");
    return bytesToFloat64(await this.#readRange(ref, 0, sizeBytes, signal));
  }

  /** Reads `lengthBytes` bytes at `offsetBytes` of a matrix blob: from the local store, else in chunks that fit a message. */
  async #readRange(ref: MatrixRef, offsetBytes: number, lengthBytes: number, signal: AbortSignal): Promise<Uint8Array> {
    // Shared memory: kernel threads read it in place, without a copy per shard.
    const out = new Uint8Array(new SharedArrayBuffer(lengthBytes));
    await this.#read(ref, signal, (o) => this.#d.transfer.readRange(ref.blobId, offsetBytes, out, ref.rows * ref.cols * 8, o));
    this.#coordinatorBytes += lengthBytes;
    return out;
  }

  /** Runs one read of a matrix blob with the worker's retries, local store and data errors. */
  async #read(ref: MatrixRef, signal: AbortSignal, read: (options: ReadOptions) => Promise<void>): Promise<void> {
    const { session, log } = this.#d;
    const expectedTotal = ref.rows * ref.cols * 8;
    await read({
      callOptions: { signal, timeoutMs: this.#d.rpcTimeoutMs },
      call: (name, rpc) => session.retry(name, rpc, { signal, workerScoped: false }),
      localStore: session.localStore,
      onLocalStoreError: (e) => log.warn({ blobId: ref.blobId, err: e }, "reading the local blob file failed; using ReadBlob"),
      // A blob that does not fit the task fails the shard, in the task's terms; it is not retried.
      dataError: (problem) =>
        new ShardDataError(
          problem.kind === "size-mismatch" && !problem.strided
            ? `blob ${ref.blobId} holds ${problem.actualBytes} bytes but a ${ref.rows}x${ref.cols} float64 matrix needs ${expectedTotal}`
            : problem.kind === "size-mismatch"
              ? `blob ${ref.blobId} does not hold a ${ref.rows}x${ref.cols} float64 matrix: ${problem.message}`
              : problem.kind === "bad-chunk" && problem.chunkBytes === 0
                ? `blob ${ref.blobId} returned no data at offset ${problem.offsetBytes}`
                : problem.message,
        ),
    });
  }
}

/** All of B, as {@link ShardInputs} for `plan`'s columns. */
function wholeB(plan: ShardPlan, b: Float64Array): Omit<ShardInputs, "a"> {
  return { b, bColStart: plan.colStart, ldb: plan.b.cols };
}
