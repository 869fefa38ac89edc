import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { type FileHandle, open, rename, unlink, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { crc32 } from "node:zlib";
import {
  applyRecord,
  createDurableModel,
  type DurableModel,
  type DurableRecord,
  type DurableSnapshot,
  fromSnapshot,
  toSnapshot,
} from "@dce/core";
import { dataDirError } from "./storage-errors.js";

/** Options of {@link Journal.open}. */
export interface JournalOptions {
  /** Folder for `snapshot.json` and the `wal-*.log` segments. */
  readonly dir: string;
  /** fsync every group commit (default true). Turning it off loses durability; tests only. */
  readonly fsync?: boolean;
  /** Write a snapshot and start a new segment once the current one holds this many bytes. */
  readonly snapshotAfterBytes?: number;
  /**
   * Also snapshot once the segment holds at least this many bytes (default 1 MiB) and
   * {@link COMPACT_RATIO} times the last snapshot: when jobs come and go, the live state
   * stays small while its history grows, and the journal must stay bounded by the state.
   */
  readonly compactAfterBytes?: number;
  /** Called before each group commit's write, to make data the records point at durable (tile bytes). */
  readonly beforeCommit?: () => Promise<void>;
  /**
   * Called before a snapshot lets old segments go: the data frames in them must not be
   * the only durable copy of any blob by then (see journal-blobs.ts).
   */
  readonly beforeSnapshot?: () => Promise<void>;
  /** Called with each group commit's duration (write + fsync), for metrics. */
  readonly onCommit?: (ms: number, records: number) => void;
  /**
   * Called when a snapshot could not be written (e.g. the disk is full). Not fatal: the
   * records are in the segments, which are kept until a later snapshot succeeds.
   */
  readonly onSnapshotFailed?: (e: unknown) => void;
  /**
   * Fault injection for crash-point tests only: SIGKILL this process at `point` of the
   * `nth` group commit that carries an accepted shard.
   */
  readonly crashAt?: CrashPoint;
}

/** A named step of accepting a result, for crash-point tests. */
export interface CrashPoint {
  readonly point: "before-journal-write" | "after-journal-write" | "after-journal-fsync";
  readonly nth: number;
}

/** Parses `POINT[:N]` (N defaults to 1); undefined for an empty or unknown value. */
export function parseCrashPoint(text: string | undefined): CrashPoint | undefined {
  const m = /^(before-journal-write|after-journal-write|after-journal-fsync)(?::(\d+))?$/.exec(text ?? "");
  if (!m) return undefined;
  return { point: m[1] as CrashPoint["point"], nth: Number(m[2] ?? 1) };
}

/** What recovery found. */
export interface RecoveryReport {
  readonly snapshotSeq: number;
  readonly segments: number;
  readonly records: number;
  /** Bytes cut off torn or corrupt tails. */
  readonly truncatedBytes: number;
  readonly ms: number;
}

const HEADER_BYTES = 8;
const MAX_RECORD_BYTES = 64 * 1024 * 1024;
const SNAPSHOT = "snapshot.json";
/** First payload byte of a data frame; a record's payload is JSON, which starts with `{`. */
const DATA_FRAME = 0;
const BLOB_ID_BYTES = 32;

/** Frames a record: u32 length, u32 CRC-32 of the payload, payload (UTF-8 JSON). */
export function encodeRecord(r: DurableRecord): Buffer {
  const payload = Buffer.from(JSON.stringify(r), "utf8");
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(payload.byteLength, 0);
  out.writeUInt32LE(crc32(payload), 4);
  payload.copy(out, HEADER_BYTES);
  return out;
}

/**
 * Frames a blob's bytes (a data frame): u32 length, u32 CRC-32 of the payload, payload =
 * one 0 byte, the blob id's 32 bytes, the blob's bytes. Replay hands them to the blob
 * store (journal-blobs.ts); they never reach the durable model.
 */
export function encodeDataFrame(blobId: string, data: Uint8Array): Buffer {
  const payloadBytes = 1 + BLOB_ID_BYTES + data.byteLength;
  const out = Buffer.allocUnsafe(HEADER_BYTES + payloadBytes);
  out.writeUInt32LE(payloadBytes, 0);
  out[HEADER_BYTES] = DATA_FRAME;
  out.write(blobId, HEADER_BYTES + 1, BLOB_ID_BYTES, "hex");
  out.set(data, HEADER_BYTES + 1 + BLOB_ID_BYTES);
  out.writeUInt32LE(crc32(out.subarray(HEADER_BYTES)), 4);
  return out;
}

/**
 * Decodes the records and data frames of one segment, stopping at the first torn or
 * corrupt frame.
 * @returns the records, the blobs of the data frames (views into `buf`), and the byte
 *   offset where valid data ends.
 */
export function decodeSegment(buf: Buffer): {
  records: DurableRecord[];
  blobs: Map<string, Uint8Array>;
  validBytes: number;
} {
  const records: DurableRecord[] = [];
  const blobs = new Map<string, Uint8Array>();
  let off = 0;
  while (off + HEADER_BYTES <= buf.byteLength) {
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    if (len === 0 || len > MAX_RECORD_BYTES || off + HEADER_BYTES + len > buf.byteLength) break;
    const payload = buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len);
    if (crc32(payload) !== crc) break;
    if (payload[0] === DATA_FRAME) {
      if (len < 1 + BLOB_ID_BYTES) break;
      blobs.set(payload.toString("hex", 1, 1 + BLOB_ID_BYTES), payload.subarray(1 + BLOB_ID_BYTES));
      off += HEADER_BYTES + len;
      continue;
    }
    let rec: DurableRecord;
    try {
      rec = JSON.parse(payload.toString("utf8")) as DurableRecord;
    } catch {
      break;
    }
    records.push(rec);
    off += HEADER_BYTES + len;
  }
  return { records, blobs, validBytes: off };
}

const segName = (seq: number) => `wal-${String(seq).padStart(12, "0")}.log`;
const segSeq = (name: string) => Number(/^wal-(\d{12})\.log$/.exec(name)?.[1] ?? Number.NaN);

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The coordinator's write-ahead journal: an append-only log of {@link DurableRecord}s
 * with a CRC per record, group-committed (one write + fdatasync for every record
 * appended while the previous commit ran), plus periodic snapshots that let old
 * segments be deleted. A torn or corrupt tail is detected on open and truncated at
 * the last good record; it is never read as data.
 *
 * Chosen over SQLite because it is pure JavaScript (no native addon to build for every
 * Node ABI in CI), the records are few and small (big data lives in content-addressed
 * files), and the event-sourced core already folds records into state.
 */
/** A segment this many times the last snapshot's size is folded into a new snapshot (see `compactAfterBytes`). */
export const COMPACT_RATIO = 4;

export class Journal {
  readonly model: DurableModel;
  readonly #opts: Required<
    Omit<JournalOptions, "beforeCommit" | "beforeSnapshot" | "onCommit" | "onSnapshotFailed" | "crashAt">
  > &
    JournalOptions;
  #seq: number;
  #fh: FileHandle;
  #segmentBytes: number;
  #pending: Buffer[] = [];
  #chain: Promise<void> = Promise.resolve();
  #scheduled: Promise<void> | undefined;
  #failed: Error | undefined;
  #closed = false;
  #acceptCommits = 0;
  /** Size of the last snapshot written or read, for the compaction rule. */
  #snapshotBytes: number;

  private constructor(
    opts: JournalOptions,
    model: DurableModel,
    seq: number,
    fh: FileHandle,
    segmentBytes: number,
    snapshotBytes: number,
  ) {
    this.#opts = { fsync: true, snapshotAfterBytes: 64 * 1024 * 1024, compactAfterBytes: 1024 * 1024, ...opts };
    this.#snapshotBytes = snapshotBytes;
    this.model = model;
    this.#seq = seq;
    this.#fh = fh;
    this.#segmentBytes = segmentBytes;
  }

  /** Opens (or creates) a journal, recovering the durable model from snapshot + segments. */
  static async open(opts: JournalOptions): Promise<{ journal: Journal; report: RecoveryReport; blobs: Map<string, Uint8Array> }> {
    const t0 = performance.now();
    mkdirSync(opts.dir, { recursive: true });
    let model = createDurableModel();
    let snapshotSeq = 0;
    let snapshotBytes = 0;
    const snapPath = join(opts.dir, SNAPSHOT);
    if (existsSync(snapPath)) {
      const raw = readFileSync(snapPath, "utf8");
      snapshotBytes = raw.length;
      const nl = raw.indexOf("\n");
      const [sum, seqText] = raw.slice(0, nl).split(" ");
      const body = raw.slice(nl + 1);
      // The snapshot is written to a temporary file and renamed, so a bad checksum means the disk lied.
      if (createHash("sha256").update(body).digest("hex") !== sum) {
        throw new Error(`journal snapshot ${snapPath} is corrupt (checksum mismatch); refusing to start`);
      }
      model = fromSnapshot(JSON.parse(body) as DurableSnapshot);
      snapshotSeq = Number(seqText);
    }
    const segs = readdirSync(opts.dir)
      .map(segSeq)
      .filter((s) => Number.isFinite(s) && s > snapshotSeq)
      .sort((a, b) => a - b);
    let records = 0;
    const blobs = new Map<string, Uint8Array>();
    let truncatedBytes = 0;
    let lastBytes = 0;
    for (const [i, seq] of segs.entries()) {
      const path = join(opts.dir, segName(seq));
      const buf = readFileSync(path);
      const dec = decodeSegment(buf);
      for (const r of dec.records) applyRecord(model, r);
      for (const [blobId, data] of dec.blobs) blobs.set(blobId, data);
      records += dec.records.length;
      if (dec.validBytes < buf.byteLength) {
        truncatedBytes += buf.byteLength - dec.validBytes;
        truncateSync(path, dec.validBytes);
        // Anything after a corrupt tail was written later than the damage: drop later segments too.
        for (const later of segs.slice(i + 1)) {
          truncatedBytes += readFileSync(join(opts.dir, segName(later))).byteLength;
          rmSync(join(opts.dir, segName(later)));
        }
        lastBytes = dec.validBytes;
        segs.length = i + 1;
        break;
      }
      lastBytes = dec.validBytes;
    }
    const seq = segs.at(-1) ?? snapshotSeq + 1;
    const fh = await open(join(opts.dir, segName(seq)), "a");
    if (segs.length === 0) fsyncDir(opts.dir);
    const journal = new Journal(opts, model, seq, fh, segs.length === 0 ? 0 : lastBytes, snapshotBytes);
    return {
      journal,
      report: { snapshotSeq, segments: segs.length, records, truncatedBytes, ms: performance.now() - t0 },
      blobs,
    };
  }

  /** Appends a record (applied to {@link model} at once); it is durable when {@link commit} resolves. */
  append(r: DurableRecord): void {
    if (this.#closed) throw new Error("journal is closed");
    applyRecord(this.model, r);
    this.#pending.push(encodeRecord(r));
    this.#pendingRecords++;
    if (r.type === "shard-accepted") this.#pendingAccepts = true;
  }

  #pendingAccepts = false;
  /** Records (not data frames) in {@link #pending}. */
  #pendingRecords = 0;
  /** A group commit is writing or syncing. */
  #writing = false;

  /** True when every record appended so far is durable: nothing pending, no commit in flight. */
  get settled(): boolean {
    return this.#pending.length === 0 && this.#scheduled === undefined && !this.#writing && this.#failed === undefined;
  }

  /**
   * Appends a blob's bytes as a data frame: durable with the records appended after it,
   * by the same {@link commit}. Append it before the record that names the blob.
   */
  appendBlob(blobId: string, data: Uint8Array): void {
    if (this.#closed) throw new Error("journal is closed");
    this.#pending.push(encodeDataFrame(blobId, data));
  }

  /** Kills the process here if a crash-point test asked for it. */
  #maybeCrash(point: CrashPoint["point"], armed: boolean): void {
    const c = this.#opts.crashAt;
    if (armed && c && c.point === point && this.#acceptCommits === c.nth) process.kill(process.pid, "SIGKILL");
  }

  /**
   * Resolves once every record appended so far is on disk. Concurrent callers share
   * one write and one fdatasync (group commit). Rejects if the disk failed (with a
   * `DataDirError` for a full or failing disk), and so does every later commit: memory
   * is ahead of disk, and the coordinator stops. The failed batch is cut off the
   * segment first, so after a restart none of its records count, as its callers were told.
   */
  commit(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#pending.length === 0 && this.#scheduled === undefined) return this.#chain;
    if (this.#scheduled === undefined) {
      this.#chain = this.#chain.then(() => {
        this.#scheduled = undefined;
        return this.#write();
      });
      this.#scheduled = this.#chain;
    }
    return this.#scheduled;
  }

  async #write(): Promise<void> {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    const records = this.#pendingRecords;
    this.#pending = [];
    this.#pendingRecords = 0;
    const armed = this.#pendingAccepts;
    this.#pendingAccepts = false;
    if (armed) this.#acceptCommits++;
    const t0 = performance.now();
    this.#writing = true;
    try {
      await this.#opts.beforeCommit?.();
      this.#maybeCrash("before-journal-write", armed);
      const buf = batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch);
      let off = 0;
      while (off < buf.byteLength) off += (await this.#fh.write(buf, off, buf.byteLength - off)).bytesWritten;
      this.#maybeCrash("after-journal-write", armed);
      if (this.#opts.fsync) await this.#fh.datasync();
      this.#maybeCrash("after-journal-fsync", armed);
      this.#segmentBytes += buf.byteLength;
    } catch (e) {
      // Whatever part of the batch reached the file goes: it was never acknowledged.
      await this.#fh.truncate(this.#segmentBytes).catch(() => {});
      const dataDir = dirname(resolve(this.#opts.dir));
      const mapped = dataDirError(
        e,
        dataDir,
        `writing the journal (${segName(this.#seq)}), so nothing of this request was saved and the coordinator restarts`,
      );
      this.#failed = mapped ?? (e instanceof Error ? e : new Error(String(e)));
      throw this.#failed;
    } finally {
      this.#writing = false;
    }
    this.#opts.onCommit?.(performance.now() - t0, records);
    const compact =
      this.#segmentBytes >= this.#opts.compactAfterBytes && this.#segmentBytes >= COMPACT_RATIO * this.#snapshotBytes;
    if (compact || this.#segmentBytes >= this.#opts.snapshotAfterBytes) await this.#trySnapshot();
  }

  /** Forces a snapshot now (after the pending commit); a failed snapshot is reported to `onSnapshotFailed`. */
  snapshot(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#write()).then(() => this.#trySnapshot());
    return this.#chain;
  }

  /** {@link #snapshot}, whose failure only costs the space of the old segments. */
  async #trySnapshot(): Promise<void> {
    try {
      await this.#snapshot();
    } catch (e) {
      await unlink(join(this.#opts.dir, `${SNAPSHOT}.tmp`)).catch(() => {});
      this.#opts.onSnapshotFailed?.(e);
    }
  }

  /**
   * Writes the model as a snapshot and starts a new segment. Runs inside the commit
   * chain, so no commit overlaps it. Records appended meanwhile go to the new segment;
   * replaying one that the snapshot already holds is harmless (records are idempotent).
   */
  async #snapshot(): Promise<void> {
    await this.#opts.beforeCommit?.();
    await this.#opts.beforeSnapshot?.();
    const oldSeq = this.#seq;
    const body = JSON.stringify(toSnapshot(this.model));
    const newSeq = oldSeq + 1;
    const newFh = await open(join(this.#opts.dir, segName(newSeq)), "a");
    const oldFh = this.#fh;
    this.#fh = newFh;
    this.#seq = newSeq;
    this.#segmentBytes = 0;
    await oldFh.close();
    const sum = createHash("sha256").update(body).digest("hex");
    const tmp = join(this.#opts.dir, `${SNAPSHOT}.tmp`);
    await writeFile(tmp, `${sum} ${oldSeq}\n${body}`);
    this.#snapshotBytes = body.length;
    const fh = await open(tmp, "r");
    await fh.sync();
    await fh.close();
    await rename(tmp, join(this.#opts.dir, SNAPSHOT));
    fsyncDir(this.#opts.dir);
    for (const name of readdirSync(this.#opts.dir)) {
      const s = segSeq(name);
      if (Number.isFinite(s) && s <= oldSeq) await unlink(join(this.#opts.dir, name));
    }
  }

  /** Commits what is pending and closes the segment. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.commit();
    } finally {
      this.#closed = true;
      await this.#chain.catch(() => {});
      await this.#fh.close();
    }
  }
}
