/**
 * Where a coordinator's blob store keeps its files (`@dce/runtime/blob-layout`). The
 * coordinator writes this layout and peers on the same host read it (the local store),
 * so it is written down here once:
 *
 * ```text
 * <dir>/store-id                  random id naming this store (hex, one line)
 * <dir>/blobs/<2 hex>/<blob id>   a stored blob; its id is the SHA-256 of its bytes, 64 lower-case hex
 * <dir>/uploads/<upload id>       an upload in progress (gone after a restart)
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
