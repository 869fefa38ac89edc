/**
 * Host checks shared by the modules that reinterpret typed-array memory as
 * little-endian bytes (npy and blob transfer).
 *
 * @packageDocumentation
 */

let checked = false;

/**
 * Throws if the host is big-endian. Typed arrays use host byte order, while
 * `.npy` `<f8` data and dce blobs are little-endian; on a little-endian host
 * both can be copied byte for byte. Checked lazily so importing has no effect.
 */
export function assertLittleEndianHost(): void {
  if (checked) return;
  const probe = new Uint8Array(new Uint16Array([1]).buffer);
  if (probe[0] !== 1) {
    throw new Error("@dce/client-sdk requires a little-endian host");
  }
  checked = true;
}
