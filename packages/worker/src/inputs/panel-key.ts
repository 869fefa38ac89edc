/**
 * Names of input panels in the worker's blob cache. A worker caches the A row panels and
 * B column panels its shards use under these keys, and its panel server (peer/) serves
 * peers by the same keys, so both sides must agree on them.
 *
 * @packageDocumentation
 */

/** Key of rows `[r0, r1)` of the matrix `blobId` (a contiguous byte range of it). */
export function rowPanelKey(blobId: string, r0: number, r1: number): string {
  return `${blobId}:rows:${r0}-${r1}`;
}

/** Key of columns `[c0, c1)` of the matrix `blobId`, held as a contiguous rows × (c1 − c0) row-major panel. */
export function colPanelKey(blobId: string, c0: number, c1: number): string {
  return `${blobId}:cols:${c0}-${c1}`;
}
