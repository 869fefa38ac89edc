/**
 * Where a coordinator's blob store keeps its files (`@dce/runtime/blob-layout`). The
 * coordinator writes this layout and peers on the same host read it (the local store),
 * so it is written down here once:
 *
 * ```text
 * <dir>/store-id                  random id naming this store (hex, one line)
 * <dir>/blobs/<2 hex>/<blob id>   a stored blob; its id is the SHA-256 of its bytes, 64 lower-case hex
 * <dir>/uploads/<upload id>       an upload in progress (gone after a restart)
 * <dir>/staging/<job>.<shard>.<epoch>.f64   a result tile a worker wrote for its lease (gone after a restart)
 * ```
 *
 * The blob files are spread over 256 folders by the first two hex digits of their id, so
 * no folder grows past what every file system lists quickly. Pure path arithmetic: nothing
 * here touches the disk.
 *
 * @packageDocumentation
 */
import { join } from "node:path";

/** A blob id: the hex SHA-256 of the blob's bytes, 64 lower-case characters. */
const BLOB_ID = /^[0-9a-f]{64}$/;

/** Whether `id` is a well-formed blob id (64 lower-case hex characters). */
export function isBlobId(id: string): boolean {
  return BLOB_ID.test(id);
}

/** The file holding the store's id, `<dir>/store-id`. */
export function storeIdPath(dir: string): string {
  return join(dir, "store-id");
}

/** The folder of every blob, `<dir>/blobs`. */
export function blobsDir(dir: string): string {
  return join(dir, "blobs");
}

/** The folder holding the blob `blobId`, `<dir>/blobs/<first 2 hex of the id>`. The id is not checked. */
export function blobPrefixDir(dir: string, blobId: string): string {
  return join(blobsDir(dir), blobId.slice(0, 2));
}

/** The file of the blob `blobId`, `<dir>/blobs/<2 hex>/<blobId>`. The id is not checked: see {@link isBlobId}. */
export function blobPath(dir: string, blobId: string): string {
  return join(blobPrefixDir(dir, blobId), blobId);
}

/** The folder of uploads in progress, `<dir>/uploads`. */
export function uploadsDir(dir: string): string {
  return join(dir, "uploads");
}

/** The file of the upload `uploadId`, `<dir>/uploads/<uploadId>`. */
export function uploadPath(dir: string, uploadId: string): string {
  return join(uploadsDir(dir), uploadId);
}

/** The folder of result tiles workers staged for their leases, `<dir>/staging`. */
export function stagingDir(dir: string): string {
  return join(dir, "staging");
}

/** A job id that may appear in a staging file's name: letters, digits, `-` and `_`, at most 128. */
const STAGED_JOB_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** A staging file's name: `<job id>.<shard index>.<epoch>.f64`, numbers in decimal without leading zeros. */
const STAGED_NAME = /^([A-Za-z0-9_-]{1,128})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,19})\.f64$/;

/** The lease a staging file belongs to. */
export interface StagedTileLease {
  readonly jobId: string;
  readonly shardIndex: number;
  /** The lease's fencing epoch (the wire's uint64, or the coordinator's safe integer). */
  readonly epoch: bigint | number;
}

/**
 * The name of the staging file of a lease, `<jobId>.<shardIndex>.<epoch>.f64`; undefined
 * when the job id holds anything but letters, digits, `-` and `_` (so a name never leaves
 * the staging folder), or the numbers are out of range.
 */
export function stagedTileName(lease: StagedTileLease): string | undefined {
  const { jobId, shardIndex, epoch } = lease;
  if (!STAGED_JOB_ID.test(jobId) || !Number.isInteger(shardIndex) || shardIndex < 0 || shardIndex > 0xffff_ffff) {
    return undefined;
  }
  if (typeof epoch === "number" ? !Number.isSafeInteger(epoch) || epoch < 0 : epoch < 0n || epoch > 0xffff_ffff_ffff_ffffn) {
    return undefined;
  }
  return `${jobId}.${shardIndex}.${epoch}.f64`;
}

/** The lease a staging file's name names, or undefined when it is not such a name. */
export function parseStagedTileName(name: string): (StagedTileLease & { readonly epoch: bigint }) | undefined {
  const m = STAGED_NAME.exec(name);
  if (m === null) return undefined;
  const lease = { jobId: m[1] as string, shardIndex: Number(m[2]), epoch: BigInt(m[3] as string) };
  return stagedTileName(lease) === name ? lease : undefined;
}

/** The staging file of a lease, `<dir>/staging/<name>`; undefined when {@link stagedTileName} refuses the lease. */
export function stagedTilePath(dir: string, lease: StagedTileLease): string | undefined {
  const name = stagedTileName(lease);
  return name === undefined ? undefined : join(stagingDir(dir), name);
}
