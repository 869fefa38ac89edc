/**
 * Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
 *
 * Only 2-D float64 and float32 arrays are supported: that is what dce
 * multiplies. Either byte order and either memory order (C or Fortran) is
 * read and converted to little-endian float64 in C order; files are always
 * written as little-endian float64 in C order. See
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 * @packageDocumentation
 */
import { NpyFormatError } from "./errors.js";
import { assertLittleEndianHost } from "./internal/host.js";
import { type NpyHeader, parseHeader } from "./npy-header.js";
import type { Matrix } from "./types.js";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const MAGIC_LENGTH = MAGIC.length;
// numpy pads the header so that the data starts at a multiple of 64 bytes.
const ARRAY_ALIGN_BYTES = 64;
// numpy leaves room for the growth axis to reach 21 digits; encodeNpy copies
// this so its output is byte-identical to numpy.save (pinned by "matches numpy.save bytes").
const GROWTH_AXIS_MAX_DIGITS = 21;
// Columns transposed together when reading a Fortran-order file: each row of
// the result gets this many contiguous writes, while the reads walk as many
// columns of the file side by side.
const TRANSPOSE_BAND_COLS = 64;

/**
 * Parses a NumPy `.npy` file holding a 2-D float64 or float32 array.
 *
 * Accepts format versions 1.0, 2.0 and 3.0; dtype `<f8`, `>f8`, `<f4` or
 * `>f4` (float32 is upcast to float64); C or Fortran order
 * (`fortran_order: True`, what `numpy.save` writes for a transposed array).
 * The result is always row-major little-endian float64 and owns a fresh,
 * aligned `Float64Array`: it never aliases `bytes`. Zero-sized dimensions are
 * parsed; the SDK rejects them when the matrix is used. Bytes after the data
 * are ignored, as numpy does.
 *
 * Memory: the conversion reads `bytes` in place, so whatever the layout the
 * only allocation is the result (8 bytes per element) next to the caller's
 * `bytes`. A `<f8` C-order file is copied as is; other layouts are converted
 * element by element, and a Fortran-order file is transposed, which is slower
 * (pinned by "allocates nothing but the result" in npy.test.ts).
 *
 * @param bytes - The whole file.
 * @returns The matrix, row-major.
 * @throws {@link NpyFormatError} with a one-line message naming the problem:
 *   bad magic, unknown version, truncated or unparsable header, unsupported
 *   dtype (any other than the four above, e.g. integers or objects), a shape
 *   that is not 2-D, or truncated data.
 */
export function parseNpy(bytes: Uint8Array): Matrix {
  return parseNpyBytes(bytes, false);
}

/**
 * {@link parseNpy}, except that a `<f8` C-order file whose data lies 8-byte aligned in
 * `bytes` (as numpy aligns it to 64 in the file) gives a view of `bytes`, not a copy: for
 * a caller that owns `bytes` and leaves them alone (the `dce` CLI, which reads a file
 * only to send it).
 * @internal
 */
export function parseNpyInPlace(bytes: Uint8Array): Matrix {
  return parseNpyBytes(bytes, true);
}

function parseNpyBytes(bytes: Uint8Array, inPlace: boolean): Matrix {
  assertLittleEndianHost();
  if (bytes.length < MAGIC_LENGTH + 2 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new NpyFormatError("not a .npy file: bad magic (expected \\x93NUMPY)");
  }
  const major = bytes[6] ?? 0;
  const minor = bytes[7] ?? 0;
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    throw new NpyFormatError(`unsupported .npy format version ${major}.${minor}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthFieldBytes = major === 1 ? 2 : 4;
  const headerStart = MAGIC_LENGTH + 2 + lengthFieldBytes;
  if (bytes.length < headerStart) {
    throw new NpyFormatError("truncated .npy header length");
  }
  const headerLength = major === 1 ? view.getUint16(MAGIC_LENGTH + 2, true) : view.getUint32(MAGIC_LENGTH + 2, true);
  const dataStart = headerStart + headerLength;
  if (bytes.length < dataStart) {
    throw new NpyFormatError(`truncated .npy header: declares ${headerLength} bytes, file has ${bytes.length - headerStart}`);
  }
  // Versions 1 and 2 use latin1 headers, version 3 utf8.
  const headerText = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart));
  const header = parseHeader(headerText);

  const itemBytes = header.descr.endsWith("8") ? 8 : 4;
  const count = header.rows * header.cols;
  const dataBytes = count * itemBytes;
  if (!Number.isSafeInteger(dataBytes)) {
    throw new NpyFormatError(`shape (${header.rows}, ${header.cols}) is too large`);
  }
  const available = bytes.length - dataStart;
  if (available < dataBytes) {
    throw new NpyFormatError(
      `truncated data: shape (${header.rows}, ${header.cols}) needs ${dataBytes} bytes, file has ${available}`,
    );
  }
  const columnMajor = header.fortranOrder && header.rows > 1 && header.cols > 1;
  if (inPlace && header.descr === "<f8" && !columnMajor && (bytes.byteOffset + dataStart) % 8 === 0) {
    return { rows: header.rows, cols: header.cols, data: new Float64Array(bytes.buffer, bytes.byteOffset + dataStart, count) };
  }
  const data = toFloat64RowMajor(bytes.subarray(dataStart, dataStart + dataBytes), header, itemBytes);
  return { rows: header.rows, cols: header.cols, data };
}

/**
 * Converts the data section of a file to a fresh little-endian float64 array
 * in C order. Reads `src` where it lies and allocates only the result.
 */
function toFloat64RowMajor(src: Uint8Array, header: NpyHeader, itemBytes: 4 | 8): Float64Array {
  const { rows, cols } = header;
  const count = rows * cols;
  // With one row or one column, both orders store the elements in the same sequence.
  const columnMajor = header.fortranOrder && rows > 1 && cols > 1;
  if (header.descr === "<f8" && !columnMajor) {
    // Already the result's bytes: one copy into a fresh ArrayBuffer, aligned even
    // when the data offset inside `bytes` is not a multiple of 8. Not
    // src.slice(): on a Node Buffer that is a view of the shared pool.
    const copy = new ArrayBuffer(count * 8);
    new Uint8Array(copy).set(src);
    return new Float64Array(copy);
  }
  // A DataView reads at any alignment in either byte order, without a staging copy.
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const littleEndian = header.descr.startsWith("<");
  const read =
    itemBytes === 8
      ? (offset: number) => view.getFloat64(offset, littleEndian)
      : (offset: number) => view.getFloat32(offset, littleEndian);
  const out = new Float64Array(count);
  if (!columnMajor) {
    for (let k = 0; k < count; k++) out[k] = read(k * itemBytes);
    return out;
  }
  // Element (i, j) is at index j * rows + i of the file. Transposed in bands of
  // columns, so neither the reads nor the writes stride across the whole matrix
  // one element at a time.
  for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_BAND_COLS) {
    const j1 = Math.min(cols, j0 + TRANSPOSE_BAND_COLS);
    for (let i = 0; i < rows; i++) {
      const rowStart = i * cols;
      for (let j = j0; j < j1; j++) out[rowStart + j] = read((j * rows + i) * itemBytes);
    }
  }
  return out;
}

/**
 * Encodes a matrix as a NumPy `.npy` file, byte-identical to what `numpy.save`
 * writes for a C-order float64 array: format 1.0, dtype `<f8`, header padded
 * with spaces and a final `\n` so the data starts at a multiple of 64 bytes.
 *
 * @param m - The matrix; `m.data.length` must equal `rows * cols`.
 * @returns The whole file.
 * @throws `RangeError` if the shape is not two non-negative integers matching
 *   `data.length`, or the header would not fit format 1.0.
 */
export function encodeNpy(m: Matrix): Uint8Array {
  const header = npyHeader(m);
  const { data } = m;
  const out = new Uint8Array(header.byteLength + data.byteLength);
  out.set(header, 0);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.byteLength);
  return out;
}

/**
 * The bytes of a `.npy` file before its data, for `m` (the shape checks of
 * {@link encodeNpy}): writing them, then `m.data`'s bytes, makes the same file without
 * copying the data into one buffer first.
 * @internal
 */
export function npyHeader(m: Matrix): Uint8Array {
  assertLittleEndianHost();
  const { rows, cols, data } = m;
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`invalid shape ${rows}x${cols}: rows and cols must be non-negative integers`);
  }
  if (data.length !== rows * cols) {
    throw new RangeError(`data has ${data.length} elements, shape ${rows}x${cols} needs ${rows * cols}`);
  }
  // Same text and padding as numpy.lib.format._write_array_header / _wrap_header.
  let dict = `{'descr': '<f8', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  dict += " ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(rows).length));
  const prefixBytes = MAGIC_LENGTH + 2 + 2;
  const unpadded = dict.length + 1; // + "\n"
  const padding = ARRAY_ALIGN_BYTES - ((prefixBytes + unpadded) % ARRAY_ALIGN_BYTES);
  const headerLength = unpadded + padding;
  if (headerLength > 0xffff) {
    throw new RangeError("npy header too long for format 1.0");
  }
  const out = new Uint8Array(prefixBytes + headerLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, headerLength, true);
  const headerText = `${dict}${" ".repeat(padding)}\n`;
  for (let i = 0; i < headerText.length; i++) out[prefixBytes + i] = headerText.charCodeAt(i);
  return out;
}
