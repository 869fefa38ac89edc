import { createHash } from "node:crypto";

/** True on little-endian hosts, where float64 wire bytes can be viewed without a copy. */
const hostIsLittleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Reinterprets wire bytes (little-endian float64, row-major) as numbers. Takes
 * ownership of `bytes`: on little-endian hosts the result is a view of the same
 * memory when it is aligned and spans its whole buffer, otherwise a copy.
 *
 * @throws RangeError if the length is not a multiple of 8.
 */
export function bytesToFloat64(bytes: Uint8Array): Float64Array {
  if (bytes.byteLength % 8 !== 0) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of float64s`);
  if (hostIsLittleEndian) {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    // A whole buffer (plain or shared) is viewed in place; anything else is copied to align it.
    const own = whole ? bytes : bytes.slice();
    return new Float64Array(own.buffer, 0, own.byteLength / 8);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float64Array.from({ length: bytes.byteLength / 8 }, (_, i) => view.getFloat64(i * 8, true));
}

/** The wire bytes (little-endian float64) of `x`; a view of the same memory on little-endian hosts. */
export function float64ToBytes(x: Float64Array): Uint8Array {
  if (hostIsLittleEndian) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const out = new Uint8Array(x.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < x.length; i++) view.setFloat64(i * 8, x[i] as number, true);
  return out;
}

/**
 * Lower-case hex SHA-256 of `bytes`, hashed in slices with a yield between them so a
 * large tile does not stall heartbeats.
 */
export async function sha256Hex(bytes: Uint8Array, sliceBytes = 8 << 20): Promise<string> {
  const hash = createHash("sha256");
  for (let off = 0; off < bytes.byteLength; off += sliceBytes) {
    hash.update(bytes.subarray(off, Math.min(off + sliceBytes, bytes.byteLength)));
    if (off + sliceBytes < bytes.byteLength) await new Promise((r) => setImmediate(r));
  }
  return hash.digest("hex");
}
